"""``serbench predict MODEL FILE|FOLDER... [--format table|json|csv] [--output FILE]
[--window S] [--hop S] [--cut] [--runtime torch|onnx] [--source DIR] [--threads N]``:
label audio with a saved model (:mod:`serbench.deploy`).

``MODEL`` is a model folder or a result folder holding one. Folders are searched
recursively for audio. Every file gets the predicted class and each class's
probability; a file longer than the model's ``maxlen`` is cut into windows (``--window``
seconds, default ``maxlen``; ``--hop`` seconds apart, default a window: side by side,
the last one ending at the file's end) whose
probabilities are averaged, and json/csv also hold the per-window rows. ``--cut`` scores
only each file's first ``maxlen`` samples, exactly as the study scored its test split.

A file that is not audio, is empty or is shorter than 0.1 s is named on stderr (one line
each) while every other file is still predicted and written; the exit code is then 2.
A model that cannot be loaded, or a folder without audio: one line, exit 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from serbench.cli.messages import error
from serbench.errors import UserError

NAME = "predict"
FORMATS = ("table", "json", "csv")
PROGRESS_FROM = 20  # files; fewer finish before a progress bar is worth drawing


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(NAME, help="label audio files with a saved model (table, json, csv)")
    parser.add_argument("model", type=Path, metavar="MODEL", help="a saved model folder, or a result folder holding one")
    parser.add_argument("paths", type=Path, nargs="+", metavar="FILE|FOLDER", help="audio files, or folders searched recursively")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument("--window", type=_seconds, metavar="S", help="window length in seconds (default: the model's maxlen)")
    parser.add_argument("--hop", type=_seconds, metavar="S", help="seconds between window starts (default: one window, so windows do not overlap)")
    parser.add_argument("--cut", action="store_true", help="score only each file's first maxlen samples, as a study scores its clips")
    parser.add_argument("--speaker", metavar="ID", help="the files are this enrolled speaker's (a model trained with speaker_enrolment): standardise them with its training statistics")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch", help="torch (default) or onnx (model.onnx from serbench export)")
    parser.add_argument("--source", metavar="DIR", help="where the pre-trained backbone is here, if not where the job found it")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: the CPUs this process may use)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not a positive number of seconds")
    return value


def run(args: argparse.Namespace) -> int:
    from serbench.deploy import load_model
    from serbench.deploy.files import audio_files
    from serbench.execution.limits import configure_torch_threads

    if args.output is not None and args.output.is_dir():
        raise UserError(f"--output {args.output}: is a folder; name a file")
    if args.cut and (args.window is not None or args.hop is not None):
        raise UserError("--cut scores one window per file: drop --window and --hop")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads {args.threads}: name 1 or more")
    files = audio_files(args.paths)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    else:
        configure_torch_threads(float("inf"))
    model = load_model(args.model, source=args.source, runtime=args.runtime)
    predictions = _predict(model, files, args)
    failed = [p for p in predictions if p.error is not None]
    for prediction in failed:
        error(f"{prediction.path}: {prediction.error}")
    text = render(model, [p for p in predictions if p.error is None], args.format)
    _write(text, args, model, len(predictions) - len(failed))
    if failed:
        error(f"{len(failed)} of {len(predictions)} files could not be predicted")
        return 2
    return 0


def _predict(model, files: list[Path], args: argparse.Namespace):
    how = {"window": args.window, "hop": args.hop, "cut": args.cut, "speaker": args.speaker}
    if len(files) < PROGRESS_FROM or not sys.stderr.isatty():
        return model.predict_files(files, **how)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("predicting", total=len(files))
        return model.predict_files(files, progress=lambda done: progress.update(task, completed=done), **how)


def render(model, predictions, fmt: str) -> str:
    """The predictions as ``json``, ``csv`` or a plain-text ``table``."""
    if fmt == "json":
        return json.dumps(
            {
                "model": str(model.folder),
                "runtime": model.runtime,
                "classes": model.classes,
                "files": [_file_json(p) for p in predictions],
            },
            indent=2,
        ) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path", "window", "start_s", "end_s", "label", *model.classes])
        for p in predictions:
            writer.writerow([p.path, "", _time(0.0), _time(p.duration_s), p.label, *(_round(p.probabilities[c]) for c in model.classes)])
            if len(p.windows) > 1:
                for index, w in enumerate(p.windows):
                    writer.writerow(
                        [p.path, index, _time(w.start_s), _time(w.end_s), w.label, *(_round(w.probabilities[c]) for c in model.classes)]
                    )
        return out.getvalue()
    return _table(model, predictions)


def _file_json(p) -> dict:
    return {
        "path": str(p.path),
        "duration_s": p.duration_s,
        "label": p.label,
        "probabilities": p.probabilities,
        "windows": [
            {"start_s": w.start_s, "end_s": w.end_s, "label": w.label, "probabilities": w.probabilities} for w in p.windows
        ],
    }


def _table(model, predictions) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(predictions)} file(s), model {model.folder}")
    table.add_column("file")
    table.add_column("label")
    table.add_column("p", justify="right")
    table.add_column("windows", justify="right")
    for p in predictions:
        table.add_row(str(p.path), p.label, f"{p.probabilities[p.label]:.3f}", str(len(p.windows)))
    console = Console(file=io.StringIO(), width=max(100, *(len(str(p.path)) + 30 for p in predictions)) if predictions else 100)
    console.print(table)
    return console.file.getvalue()


def _round(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _time(seconds: float | None) -> str:
    """Seconds exact to the sample however long the file (a 16 kHz sample is 0.0000625 s):
    six significant digits would step by 0.1 ms from 10 s on, and by 0.1 s beyond 2.8 h."""
    return "" if seconds is None else f"{seconds:.7f}".rstrip("0").rstrip(".")


def _write(text: str, args: argparse.Namespace, model, count: int) -> None:
    from serbench.cli.messages import write_output

    write_output(text, args.output, f"{args.format} predictions of {count} file(s) by {model.folder} ({model.runtime})")
