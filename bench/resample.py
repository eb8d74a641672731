"""Resampling benchmark: prints ONE JSON object of figures measured in one run on the
same EmoDB clips (all 535, ``--files N`` of them, or 60 with ``--quick``).

The unusual-rate corpus is **EmoDB resampled up**, not a corpus recorded at that rate:
each 16 kHz EmoDB clip is resampled with soxr (VHQ) to 24,414 Hz (the unusual rate pair
of issue 12) and written as 16-bit PCM into a ``folder`` corpus, one
sub-folder per emotion (``<workdir>/folder_24414/<label>/<file>.wav``). Beside it, for a
like-for-like comparison, the same clips untouched at 16 kHz in the same layout
(``folder_16000``) and a copy of the EmoDB files in EmoDB's own layout (``emodb``).

1. ``check``: files per second of ``serbench data check <corpus> --root <dir> --json``
   run as a user runs it, as a subprocess of the installed ``serbench`` command (so the
   wall time includes interpreter start and imports, the same for every corpus; median
   of ``--repeats`` runs, after one unmeasured warm-up run of each). ``data check emodb``
   also verifies sha256 checksums against the shipped manifest; the folder corpora have
   no manifest. Peak RSS of each run from ``os.wait4``. The issue's goal: the 24,414 Hz
   folder within 2x of EmoDB's rate (``ratio`` = emodb / folder_24414 files per second).
2. ``resample``: seconds per file of the resampling alone on the 24,414 Hz files (each
   read first, untimed), each resampler in its own child process (its own peak RSS):
   - ``soxr``: ``serbench.data.audio.resample``, what ``load_audio`` runs now, on every file;
   - ``torchaudio``: ``torchaudio.functional.resample`` per file, as ``load_audio`` did
     before (the "before" figure; it is not in the product any more). At several seconds
     per file it times ``--before-files`` of the files (default 20, evenly spaced; 0: all).
   ``torchaudio_before_check_files_per_s_est`` estimates what ``data check`` of the
   24,414 Hz folder would have done before: its measured seconds per file with soxr's
   resampling time swapped for torchaudio's.
3. ``rate_sweep``: ``load_audio`` (read + resample) of the longest chosen clip written at
   rates from 1 kHz to 384 kHz (common, odd and prime rates, and seeded random ones);
   the slowest. Every rate in that range must load, each well under a second.

    python bench/resample.py --quick     # 60 files; under a minute on 2 cores
    python bench/resample.py             # all 535; about a minute (40 s of it the torchaudio figure)

Data: ``$SERBENCH_DATA`` (default ``../shared/data`` beside the checkout). Timings on a
machine shared with other work are noisy: the load average at start and end is part of
the output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RATE = 24_414
SWEEP_RATES = [1_000, 1_001, 2_000, 4_000, 7_919, 8_000, 11_025, 12_000, 16_001, 22_050, 24_000, RATE,
               32_000, 44_056, 44_100, 48_000, 50_000, 88_200, 96_000, 176_400, 192_000, 352_800,
               383_999, 384_000]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # one resampler's timing, in its own process
        return _child(argv[1], Path(argv[2]), int(argv[3]))
    parser = argparse.ArgumentParser(description="serbench resampling benchmark (prints one JSON object)")
    parser.add_argument("--files", type=int, default=None, help="EmoDB clips to use (default: all 535)")
    parser.add_argument("--quick", action="store_true", help="60 clips, 1 repeat")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="build the corpora here (kept) instead of a temp folder"
    )
    parser.add_argument(
        "--resampler",
        choices=("both", "soxr", "torchaudio"),
        default="both",
        help="which resampler's per-file time to measure (default both: now and before)",
    )
    parser.add_argument("--before-files", type=int, default=20, help="files the torchaudio figure times (0: all)")
    parser.add_argument("--repeats", type=int, default=None, help="measured runs of each data check (3; quick: 1)")
    args = parser.parse_args(argv)
    files = args.files or (60 if args.quick else None)
    repeats = args.repeats or (1 if args.quick else 3)

    os.environ.setdefault("SERBENCH_DATA", str(REPO.parent / "shared" / "data"))
    data = Path(os.environ["SERBENCH_DATA"])
    started = time.perf_counter()
    report: dict = {
        "mode": "quick" if args.quick else "full",
        "corpus": f"EmoDB resampled up to {RATE} Hz with soxr VHQ, 16-bit PCM (not a corpus recorded at {RATE} Hz)",
        "cpus": os.cpu_count(),
        "load_avg_1m_start": os.getloadavg()[0],
    }
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        scratch, cleanup = args.workdir, None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="serbench-resample-")
        scratch = Path(cleanup.name)
    try:
        corpora, chosen = build_corpora(data / "emodb", scratch, files)
        report["files"] = len(chosen)
        report["audio_s"] = round(sum(seconds for _, _, seconds in chosen), 1)
        _log(started, f"built {len(chosen)} files x 3 corpora in {scratch}")

        check = {}
        for name, (adapter, root) in corpora.items():
            check[name] = data_check(adapter, root, len(chosen), repeats)
            _log(started, f"data check {name}: {check[name]}")
        report["check"] = check
        emodb_rate = check["emodb"]["files_per_s"]
        folder_rate = check[f"folder_{RATE}"]["files_per_s"]
        report["emodb_files_per_s"] = emodb_rate
        report[f"folder_{RATE}_files_per_s"] = folder_rate
        report["ratio"] = round(emodb_rate / folder_rate, 2)
        report["ratio_vs_folder_16000"] = round(check["folder_16000"]["files_per_s"] / folder_rate, 2)
        report["within_2x_of_emodb"] = report["ratio"] <= 2

        folder = corpora[f"folder_{RATE}"][1]
        timings = {}
        if args.resampler in ("both", "soxr"):
            timings["soxr"] = child_timing("soxr", folder, 0)
            report["soxr_s_per_file"] = timings["soxr"]["s_per_file"]
            _log(started, f"soxr: {timings['soxr']}")
        if args.resampler in ("both", "torchaudio"):
            timings["torchaudio"] = child_timing("torchaudio", folder, args.before_files)
            report["torchaudio_before_s_per_file"] = timings["torchaudio"]["s_per_file"]
            _log(started, f"torchaudio: {timings['torchaudio']}")
        report["resample"] = timings
        if len(timings) == 2:
            report["speedup"] = round(timings["torchaudio"]["s_per_file"] / timings["soxr"]["s_per_file"])
            now = 1 / folder_rate
            before = now - timings["soxr"]["s_per_file"] + timings["torchaudio"]["s_per_file"]
            report["torchaudio_before_check_files_per_s_est"] = round(1 / before, 3)

        report["rate_sweep"] = rate_sweep(max(chosen, key=lambda c: c[2])[0], scratch / "sweep")
        _log(started, f"rate sweep: {report['rate_sweep']}")
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    report["load_avg_1m_end"] = os.getloadavg()[0]
    report["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report))


def _log(started: float, message: str) -> None:
    print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


def build_corpora(emodb_root: Path, scratch: Path, files: int | None):
    """The three corpora of the same ``files`` clips (evenly spaced over EmoDB's sorted
    utterances; all of them by default) and the chosen ``(path, label, seconds)``."""
    import soundfile as sf
    import soxr

    from serbench.data.adapters.emodb import EmoDB

    utterances = EmoDB().scan(emodb_root).utterances
    if files is not None and files < len(utterances):
        step = len(utterances) / files
        utterances = [utterances[int(i * step)] for i in range(files)]
    roots = {name: scratch / name for name in ("emodb", "folder_16000", f"folder_{RATE}")}
    for root in roots.values():
        shutil.rmtree(root, ignore_errors=True)
    (roots["emodb"] / "wav").mkdir(parents=True)
    chosen = []
    for utt in utterances:
        speech, rate = sf.read(str(utt.path), dtype="float32")
        shutil.copyfile(utt.path, roots["emodb"] / "wav" / utt.path.name)
        for name in ("folder_16000", f"folder_{RATE}"):
            (roots[name] / utt.label).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(utt.path, roots["folder_16000"] / utt.label / utt.path.name)
        up = soxr.resample(speech, rate, RATE, quality="VHQ")
        sf.write(roots[f"folder_{RATE}"] / utt.label / utt.path.name, up, RATE, subtype="PCM_16")
        chosen.append((utt.path, utt.label, len(speech) / rate))
    corpora = {"emodb": ("emodb", roots["emodb"])}
    corpora.update({name: ("folder", roots[name]) for name in ("folder_16000", f"folder_{RATE}")})
    return corpora, chosen


def serbench_command() -> list[str]:
    """The installed ``serbench`` command beside this interpreter, else the CLI's main."""
    script = Path(sys.executable).parent / "serbench"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from serbench.cli.main import main; sys.exit(main())"]


def run_measured(cmd: list[str]) -> tuple[float, float, int, str, str]:
    """``(wall seconds, peak RSS MB, exit code, stdout, stderr)`` of one child process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return wall, usage.ru_maxrss / 1024, proc.returncode, out.read().decode(), err.read().decode()


def data_check(adapter: str, root: Path, files: int, repeats: int) -> dict:
    cmd = [*serbench_command(), "data", "check", adapter, "--root", str(root), "--json"]
    walls, peaks = [], []
    for attempt in range(repeats + 1):  # the first: warm-up (page cache, .pyc), not measured
        wall, peak, code, out, err = run_measured(cmd)
        if code != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {code}: {err.strip()}")
        found = json.loads(out)
        if found["utterances"] != files:
            raise SystemExit(f"{' '.join(cmd)}: {found['utterances']} utterances, expected {files}")
        if attempt:
            walls.append(wall)
            peaks.append(peak)
    wall = statistics.median(walls)
    return {
        "files": files,
        "sample_rates": found["sample_rates"],
        "checksums_ok": found["checksums"]["ok"],
        "wall_s": round(wall, 2),
        "files_per_s": round(files / wall, 1),
        "peak_rss_mb": round(max(peaks)),
    }


def child_timing(resampler: str, folder: Path, limit: int) -> dict:
    wall, peak, code, out, err = run_measured([sys.executable, __file__, "--child", resampler, str(folder), str(limit)])
    if code != 0:
        raise SystemExit(f"{resampler} timing exited {code}: {err.strip()[-2000:]}")
    result = json.loads(out)
    result["peak_rss_mb"] = round(peak)
    return result


def _child(resampler: str, folder: Path, limit: int) -> None:
    """Time ``resampler`` on the ``folder``'s files (``limit`` of them, evenly spaced;
    0: all), each read first; print ``{"files", "s_per_file", "max_s"}``."""
    import warnings

    import numpy as np
    import soundfile as sf

    warnings.filterwarnings("ignore")
    paths = sorted(folder.rglob("*.wav"))
    if 0 < limit < len(paths):
        paths = [paths[int(i * len(paths) / limit)] for i in range(limit)]
    if resampler == "soxr":
        from serbench.data.audio import resample
    else:
        import torch
        import torchaudio.functional as F

        def resample(samples, orig_rate, new_rate):  # serbench.data.audio.resample before issue 12
            tensor = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
            return F.resample(tensor, orig_rate, new_rate).numpy()

    times = []
    for path in paths:
        samples, rate = sf.read(str(path), dtype="float32")
        began = time.perf_counter()
        resample(samples, rate, 16_000)
        times.append(time.perf_counter() - began)
    print(json.dumps({
        "files": len(paths),
        "s_per_file": round(sum(times) / len(times), 6),
        "max_s": round(max(times), 6),
    }))  # fmt: skip


def rate_sweep(clip: Path, folder: Path, random_rates: int = 8, seed: int = 0) -> dict:
    """``load_audio`` of ``clip`` written at each rate (soxr VHQ from 16 kHz, 16-bit PCM)."""
    import numpy as np
    import soundfile as sf
    import soxr

    from serbench.data.audio import MAX_RATE, MIN_RATE, load_audio

    rng = np.random.default_rng(seed)
    rates = sorted({*SWEEP_RATES, *(int(r) for r in rng.integers(MIN_RATE, MAX_RATE + 1, random_rates))})
    speech, rate = sf.read(str(clip), dtype="float32")
    folder.mkdir(parents=True, exist_ok=True)
    load_audio(clip)  # imports, first call
    seconds = {}
    for target in rates:
        path = folder / f"{target}.wav"
        written = soxr.resample(speech, rate, target, quality="VHQ")
        sf.write(path, written, target, subtype="PCM_16")
        began = time.perf_counter()
        wave = load_audio(path)
        seconds[target] = time.perf_counter() - began
        if abs(len(wave) - round(len(written) * 16_000 / target)) > 1:
            raise SystemExit(f"{path}: {len(wave)} samples at 16 kHz from {len(written)} at {target} Hz")
    slowest = max(seconds, key=seconds.get)
    return {
        "rates": len(rates),
        "min_rate": rates[0],
        "max_rate": rates[-1],
        "clip_s": round(len(speech) / rate, 2),
        "median_load_s": round(statistics.median(seconds.values()), 4),
        "max_load_s": round(seconds[slowest], 4),
        "slowest_rate": slowest,
    }


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
