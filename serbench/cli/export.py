"""``serbench export MODEL --format onnx [--output FILE]``: a saved model as one ONNX
graph (three for a model trained with ``speaker_norm``); the command line of :mod:`serbench.deploy.onnx_export`.

``MODEL`` is a model folder or a result folder holding one (as ``load_model`` takes
it). The graph goes to ``<model folder>/model.onnx`` or ``--output``, its record to
``<model folder>/onnx.json``, which ``load_model(MODEL, runtime="onnx")`` reads. Prints
the file written (and, for ``speaker_norm``, the statistics and head graphs beside it), its size, the largest difference from PyTorch's probabilities that the
export measured, and the time it took. Bad input -- no such model, a backbone without
ONNX support, a model that fails its checks, a folder as ``--output`` -- is one line and
exit 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "export"
FORMATS = ("onnx",)


def add_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(NAME, help="export a saved model to ONNX (one graph: encoder, head, softmax; three for speaker_norm)")
    export.add_argument("model", type=Path, metavar="MODEL", help="a model folder, or a result folder holding one")
    export.add_argument("--format", choices=FORMATS, required=True, help="what to export to (onnx)")
    export.add_argument("--output", type=Path, metavar="FILE", help="write the graph here (default: MODEL's model.onnx)")


def run(args: argparse.Namespace) -> int:
    from serbench.deploy.format import read_onnx_info
    from serbench.deploy.load import locate
    from serbench.deploy.onnx_export import export_onnx

    folder = locate(args.model)
    path = export_onnx(folder, args.output)
    record = read_onnx_info(folder)
    parity = record.parity
    print(
        f"{path}: ONNX graph (opset {record.opset}, {record.bytes / 1e6:.1f} MB, inputs {', '.join(record.inputs)}) "
        f"in {record.seconds:.1f} s; parity with PyTorch: max |difference| {parity.max_abs_diff:.2e} in class "
        f"probabilities over {len(parity.probes)} probes (tolerance {parity.tolerance:g})"
    )
    if record.speaker_norm is not None:
        graphs = record.speaker_norm
        print(f"speaker_norm: with {graphs.statistics.file} (a speaker's statistics) and {graphs.head.file} (the head)")
    return 0
