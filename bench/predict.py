"""Prediction speed of a saved model: prints ONE JSON object, then a Markdown table.

For each backbone (default whisper-tiny.en and whisper-base) a model is trained once by a
real study (``serbench run``: EmoDB holdout, one fixed configuration, ``train_layers: 1``,
``maxlen`` 64000 samples), and its folder's size is recorded. Then, for each runtime
(``torch``, and ``onnx`` after ``serbench export``), ``serbench predict`` labels every clip
of EmoDB (535 files) pinned to ONE CPU (``taskset``-style affinity and ``--threads 1``):

- ``rtf``: seconds of audio per second of prediction (reading, resampling, windows,
  encoder and head; model loading excluded), measured in a fresh process through the
  Python API the command runs (``load_model`` then ``predict_files``); the median of
  ``--repeat`` runs (``rtf_all`` lists them), and that run's ``load_s`` and memory;
- ``load_s``: that process's seconds from start to a loaded model (imports included);
- ``peak_rss_mb``: its peak resident memory;
- ``command_s`` and ``command_rtf``: the whole ``serbench predict ... --format csv``
  command, start to exit (the median of ``--repeat``), and the audio seconds per second of it.

Goal (issue 16): ``rtf`` >= 100 for whisper-tiny.en on one core, ONNX at least as fast as
PyTorch. Timings on a machine shared with other work are noisy: the load average at
start and end is part of the output.

    python bench/predict.py                       # both backbones, both runtimes
    python bench/predict.py --backbones whisper-tiny.en --runtimes torch
    python bench/predict.py --out DIR --reuse     # keep the trained models in DIR, reuse them

Data and models: ``$SERBENCH_DATA`` / ``$SERBENCH_MODELS`` (default ``../shared/data`` and
``../shared/models`` beside the checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh process pinned to one CPU: load, then predict every file, then report.
MEASURE = """
import json, resource, sys, time
started = time.perf_counter()
import torch
torch.set_num_threads(1)
from serbench.deploy import load_model
model = load_model(sys.argv[1], runtime=sys.argv[2])
loaded = time.perf_counter()
paths = sys.argv[3:]
predictions = model.predict_files(paths)
done = time.perf_counter()
failed = [p.path for p in predictions if p.error]
print(json.dumps({
    "load_s": loaded - started,
    "predict_s": done - loaded,
    "audio_s": sum(p.duration_s for p in predictions if not p.error),
    "windows": sum(len(p.windows) for p in predictions),
    "failed": [str(p) for p in failed],
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serbench predict speed (prints one JSON object and a table)")
    parser.add_argument("--backbones", nargs="+", default=["whisper-tiny.en", "whisper-base"])
    parser.add_argument("--runtimes", nargs="+", choices=["torch", "onnx"], default=["torch", "onnx"])
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: the last one allowed)")
    parser.add_argument("--out", type=Path, help="keep the trained models here (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="reuse models already in --out")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per backbone and runtime (the median is reported)")
    args = parser.parse_args(argv)

    os.environ.setdefault("SERBENCH_DATA", str(REPO.parent / "shared" / "data"))
    os.environ.setdefault("SERBENCH_MODELS", str(REPO.parent / "shared" / "models"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cpu = args.cpu if args.cpu is not None else sorted(os.sched_getaffinity(0))[-1]
    files = sorted(str(p) for p in (Path(os.environ["SERBENCH_DATA"]) / "emodb" / "wav").glob("*.wav"))
    report: dict = {"cpu": cpu, "files": len(files), "load_avg_1m_start": os.getloadavg()[0], "runs": []}
    with tempfile.TemporaryDirectory(prefix="serbench-predict-bench-") as scratch:
        out = args.out or Path(scratch)
        for backbone in args.backbones:
            model_dir = train(backbone, out, args.reuse)
            sizes = {p.name: p.stat().st_size for p in model_dir.iterdir() if p.is_file()}
            for runtime in args.runtimes:
                if runtime == "onnx":
                    serbench("export", str(model_dir), "--format", "onnx")
                    sizes = {p.name: p.stat().st_size for p in model_dir.iterdir() if p.is_file()}
                runs = sorted((measure(model_dir, runtime, files, cpu) for _ in range(args.repeat)), key=rate)
                measured = runs[len(runs) // 2]
                commands = [timed_command(model_dir, runtime, files, cpu, Path(scratch) / "predictions.csv") for _ in range(args.repeat)]
                command_s = sorted(commands)[len(commands) // 2]
                row = {
                    "backbone": backbone,
                    "runtime": runtime,
                    "rtf": rate(measured),
                    "rtf_all": [round(rate(r), 1) for r in runs],
                    "load_s": measured["load_s"],
                    "peak_rss_mb": measured["peak_rss_mb"],
                    "predict_s": measured["predict_s"],
                    "audio_s": measured["audio_s"],
                    "windows": measured["windows"],
                    "failed": measured["failed"],
                    "command_s": command_s,
                    "command_rtf": measured["audio_s"] / command_s,
                    "weights_mb": sizes.get("weights.safetensors", 0) / 1e6,
                    "onnx_mb": sizes.get("model.onnx", 0) / 1e6 if runtime == "onnx" else None,
                }
                report["runs"].append(row)
                print(f"{backbone} {runtime}: {row['rtf']:.0f}x real time, load {row['load_s']:.1f} s", file=sys.stderr)
    report["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))
    print(table(report))


def rate(measured: dict) -> float:
    """Seconds of audio per second of prediction."""
    return measured["audio_s"] / measured["predict_s"]


def train(backbone: str, out: Path, reuse: bool) -> Path:
    """A model of ``backbone`` trained by a real study; its folder."""
    name = f"predict_bench_{backbone.replace('.', '_').replace('-', '_')}"
    model_dir = out / name / "model"
    if reuse and (model_dir / "model.json").is_file():
        return model_dir
    job = {
        "name": name,
        "seed": 0,
        "dataset": {"name": "emodb", "protocol": {"name": "holdout", "test_fraction": 0.2, "val_fraction": 0.2}},
        "backbone": {"name": "whisper", "source": backbone, "options": {"layers": "mean", "train_layers": 1}},
        "training": {"batch_size": 4, "epochs": 2, "unfreeze": 1, "maxlen": 64000},
        "search_space": {"lr": {"type": "choice", "values": [5e-4]}},
        "engine": {"name": "random"},
        "budget": {"trials": 1},
        "resources": {"cpus": 2, "memory_gb": 8},
    }
    out.mkdir(parents=True, exist_ok=True)
    job_file = out / f"{name}.yaml"
    job_file.write_text(yaml.safe_dump(job, sort_keys=False))
    serbench("run", str(job_file), "--out", str(out), "--force")
    return model_dir


def serbench(*arguments: str) -> None:
    subprocess.run([sys.executable, "-m", "serbench.cli", *arguments], check=True, stdout=subprocess.DEVNULL)


def pinned(cpu: int):
    return lambda: os.sched_setaffinity(0, {cpu})


def measure(model_dir: Path, runtime: str, files: list[str], cpu: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(model_dir), runtime, *files],
        check=True, capture_output=True, text=True, preexec_fn=pinned(cpu),
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed_command(model_dir: Path, runtime: str, files: list[str], cpu: int, output: Path) -> float:
    folder = str(Path(files[0]).parent)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "serbench.cli", "predict", str(model_dir), folder, "--format", "csv",
         "--output", str(output), "--runtime", runtime, "--threads", "1"],
        check=True, stdout=subprocess.DEVNULL, preexec_fn=pinned(cpu),
    )
    return time.perf_counter() - started


def table(report: dict) -> str:
    lines = [
        "| backbone | runtime | real-time factor | load s | peak MB | command s (x real time) | weights MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['backbone']} | {r['runtime']} | {r['rtf']:.0f}x | {r['load_s']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['command_s']:.1f} ({r['command_rtf']:.0f}x) | {r['weights_mb']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
