"""Write a serbench checksum manifest (``sha256<TAB>bytes<TAB>path``) from a folder of Git
LFS pointer files, as a clone without LFS content holds them. The public repositories that
host the corpora keep each file's sha256 and size in its pointer, an independent record
of the corpus against which the manifests shipped with serbench are checked.

    python lfs_manifest.py FOLDER [--prefix wav/] [--keep-from 'Actor_\\d+'] > corpus.tsv

Paths are FOLDER-relative, cut to start at the first component matching ``--keep-from``
when given, then prefixed with ``--prefix``. Only ``*.wav`` files are listed; a file that
is not an LFS pointer is an error (the clone fetched content, or the layout changed).
"""

import argparse
import re
import sys
from pathlib import Path

POINTER = re.compile(r"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize (\d+)\n")

parser = argparse.ArgumentParser()
parser.add_argument("folder", type=Path)
parser.add_argument("--prefix", default="")
parser.add_argument("--keep-from", default=None)
args = parser.parse_args()

lines = []
for path in sorted(args.folder.rglob("*.wav")):
    match = POINTER.fullmatch(path.read_bytes()[:512].decode("ascii", errors="replace"))
    if match is None:
        sys.exit(f"{path}: not a Git LFS pointer")
    parts = path.relative_to(args.folder).parts
    if args.keep_from:
        starts = [i for i, part in enumerate(parts) if re.fullmatch(args.keep_from, part)]
        if not starts:
            sys.exit(f"{path}: no path component matches {args.keep_from!r}")
        parts = parts[starts[0]:]
    lines.append(f"{match.group(1)}\t{match.group(2)}\t{args.prefix}{'/'.join(parts)}")
if not lines:
    sys.exit(f"{args.folder}: no .wav pointer files")
print("\n".join(lines))
