"""``export_onnx(folder)``: a saved model as one ONNX graph, ``model.onnx`` in its folder.

The graph holds what runs at inference: the encoder as far as the pooled features need
it (``SERModel.onnx_module``: with an integer ``layers`` only the layers up to it), the
normalisation, the head and a softmax. Its inputs are those ``SERModel.onnx_inputs``
names for one clip (batch of one; the last axis of each input of two or more axes, time,
is dynamic), computed outside the graph (e.g. a log-mel); its output ``probabilities``
is ``(1, classes)`` in the order of ``model.json``'s classes.

It is exported with torch.onnx's ``torch.export``-based exporter at opset :data:`OPSET`
as one file (no external data: graphs under protobuf's 2 GB), checked with
``onnx.checker``, and scored by onnxruntime and by PyTorch on :data:`PROBE_SECONDS`
probe signals (seeded noise, cut to ``maxlen``): the graph is kept only when no class
probability differs by more than :data:`PARITY_TOLERANCE`, else ``ModelError`` and
nothing is written. ``onnx.json`` (:class:`~serbench.deploy.format.OnnxInfo`) then
records the graph's sha256, the opset, the versions, the parity measured, and the
weights and pre-trained files it was exported from, which
:class:`~serbench.deploy.onnx_runtime.OnnxScorer` checks before running it;
``model.json`` is left untouched. ``output`` writes the graph elsewhere; the record,
naming it, stays in the model folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from serbench import atomic
from serbench.data.manifest import sha256_file
from serbench.deploy.format import ONNX_FILE, ONNX_INFO_FILE, OnnxInfo, OnnxParity
from serbench.deploy.load import load_model, locate
from serbench.deploy.onnx_runtime import OnnxScorer, session
from serbench.errors import ModelError

OPSET = 18
OUTPUT = "probabilities"
PARITY_TOLERANCE = 1e-4
PROBE_SECONDS = (0.25, 1.0, 2.5, None)  # None: maxlen itself; every probe is cut to maxlen
EXPORTER = "torch.onnx.export (dynamo, torch.export)"


def export_onnx(model_folder: Path | str, output: Path | str | None = None) -> Path:
    """Export the model at ``model_folder`` (a model or result folder, see
    :func:`~serbench.deploy.load.locate`) to ``output`` (default: ``<model folder>/model.onnx``)
    and record it in ``<model folder>/onnx.json``; the graph's path."""
    started = time.perf_counter()
    onnx = _onnx()
    folder = locate(Path(model_folder))
    target = Path(output) if output is not None else folder / ONNX_FILE
    if target.is_dir():
        raise ModelError(f"{target}: is a folder; name the ONNX file to write")
    tuned = load_model(folder)  # every check load_model makes: weights, fingerprints
    model, info = tuned.scorer.model, tuned.info
    if tuned.scorer.speaker_norm:
        raise ModelError(
            f"{folder}: trained with speaker_norm (each speaker standardised with its own statistics, "
            "computed from that speaker's recordings at prediction time); an ONNX graph holds fixed statistics"
        )
    probes = _probes(info.maxlen, info.sample_rate)
    example = model.onnx_inputs(probes[-1], info.maxlen)  # ModelError when the backbone has no export
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.exporting")
    try:
        _export(_Graph(model).eval(), example, staging, target)
        try:
            onnx.checker.check_model(str(staging), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise ModelError(f"{target}: the exported graph does not pass onnx.checker ({_first(exc)})") from None
        difference = _parity(tuned, staging, probes)
        if not difference <= PARITY_TOLERANCE:
            raise ModelError(
                f"{folder}: the ONNX graph's probabilities differ from PyTorch's by {difference:.2e} "
                f"(more than {PARITY_TOLERANCE:g}); nothing was written"
            )
        (folder / ONNX_INFO_FILE).unlink(missing_ok=True)  # never a record of another graph
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    record = OnnxInfo(
        file=_relative(target, folder),
        sha256=sha256_file(target),
        bytes=target.stat().st_size,
        opset=OPSET,
        inputs=list(example),
        output=OUTPUT,
        weights_sha256=info.weights.sha256,
        pretrained_fingerprint=info.backbone.fingerprint,
        exporter=EXPORTER,
        versions=_versions(),
        parity=OnnxParity(
            max_abs_diff=difference, tolerance=PARITY_TOLERANCE, probes=[min(len(p), info.maxlen) for p in probes]
        ),
        seconds=round(time.perf_counter() - started, 2),
        exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    atomic.write_json(folder / ONNX_INFO_FILE, record.model_dump(mode="json"))
    return target


def _parity(tuned, graph: Path, probes: list[np.ndarray]) -> float:
    """Largest |onnxruntime - PyTorch| over the probes' class probabilities."""
    model, info = tuned.scorer.model, tuned.info
    onnx_scorer = OnnxScorer(session(graph), model.onnx_inputs, info.maxlen, len(info.classes))
    return float(np.abs(onnx_scorer.probabilities(probes) - tuned.scorer.probabilities(probes)).max())


def _onnx():
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter translates through it)
    except ImportError as exc:
        raise ModelError(f"serbench export needs {exc.name}: pip install 'serbench[onnx]'") from None
    return onnx


class _Graph(torch.nn.Module):
    """What the graph computes: ``model.onnx_module()``, ``model.classify``, a softmax."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.encoder = model.onnx_module()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model.classify(self.encoder(*inputs)), dim=1)


def _export(graph: torch.nn.Module, example: dict[str, np.ndarray], path: Path, target: Path) -> None:
    """``graph`` traced on ``example``'s inputs, as ONNX at ``path``, time axes dynamic."""
    args = tuple(torch.from_numpy(value) for value in example.values())
    dynamic = tuple({value.ndim - 1: torch.export.Dim.DYNAMIC} if value.ndim > 1 else None for value in example.values())
    with _quiet(), torch.no_grad():
        try:
            torch.onnx.export(
                graph,
                args,
                str(path),
                input_names=list(example),
                output_names=[OUTPUT],
                opset_version=OPSET,
                dynamic_shapes=(dynamic,),
                dynamo=True,
                external_data=False,
                optimize=True,
                verbose=False,
            )
        except Exception as exc:  # torch.export / onnxscript errors: many types, many lines
            raise ModelError(f"{target}: torch.onnx.export failed ({exc.__class__.__name__}: {_first(exc)})") from None


@contextlib.contextmanager
def _quiet():
    """The exporter's warnings and progress lines off the console (they are not the user's)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _probes(maxlen: int, rate: int) -> list[np.ndarray]:
    """Seeded noise of :data:`PROBE_SECONDS` (each at most ``maxlen``), shortest first."""
    rng = np.random.default_rng(0)
    lengths = sorted({min(maxlen, round(s * rate)) if s is not None else maxlen for s in PROBE_SECONDS})
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "onnx", "onnxscript", "onnxruntime", "serbench"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
