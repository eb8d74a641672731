"""``export_onnx(folder)``: a saved model as an ONNX graph, ``model.onnx`` in its folder.

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

A model trained with ``speaker_norm`` standardises each speaker with statistics known
only at prediction time, so it is exported as three graphs (opset, checks and record as
above, ``onnx.json``'s ``speaker_norm`` naming the other two): the main graph gives the
pooled ``features`` ``(1, ...)`` of one clip; ``<stem>.statistics.onnx`` maps a group's
features ``(N, ...)`` to ``norm.statistics`` (a mean and spread, or a layer mix's
per-layer means and covariances); ``<stem>.head.onnx`` maps features and statistics to
``probabilities`` ``(N, classes)``. The parity check scores the probes as one speaker's
(their own statistics) and, if the model enrolled speakers, as the first one's (its
training statistics).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from serbench import atomic
from serbench.data.manifest import sha256_file
from serbench.deploy.format import ONNX_FILE, ONNX_INFO_FILE, OnnxGraph, OnnxInfo, OnnxParity, OnnxSpeakerNorm
from serbench.deploy.load import load_model, locate
from serbench.deploy.onnx_runtime import FEATURES, OnnxScorer, SpeakerGraphs, session
from serbench.errors import ModelError
from serbench.training.features import encode_waves

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
    probes = _probes(info.maxlen, info.sample_rate)
    example = model.onnx_inputs(probes[-1], info.maxlen)  # ModelError when the backbone has no export
    parts = _parts(model, example, probes, info.maxlen, target, tuned.scorer.speaker_norm)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        for part in parts:
            _export(part)
            try:
                onnx.checker.check_model(str(part.staging), full_check=True)
            except onnx.checker.ValidationError as exc:
                raise ModelError(f"{part.target}: the exported graph does not pass onnx.checker ({_first(exc)})") from None
        difference = _parity(tuned, parts, probes)
        if not difference <= PARITY_TOLERANCE:
            raise ModelError(
                f"{folder}: the ONNX graph's probabilities differ from PyTorch's by {difference:.2e} "
                f"(more than {PARITY_TOLERANCE:g}); nothing was written"
            )
        (folder / ONNX_INFO_FILE).unlink(missing_ok=True)  # never a record of another graph
        for part in parts:
            os.replace(part.staging, part.target)
    finally:
        for part in parts:
            part.staging.unlink(missing_ok=True)
    main, *rest = parts
    record = OnnxInfo(
        file=_relative(target, folder),
        sha256=sha256_file(target),
        bytes=target.stat().st_size,
        opset=OPSET,
        inputs=list(example),
        output=main.outputs[0],
        speaker_norm=OnnxSpeakerNorm(**{part.name: _graph_record(part, folder) for part in rest}) if rest else None,
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


@dataclass
class _Part:
    """One graph to export: what computes it, example inputs by name, the axis of each
    input that is dynamic (or ``None``), its output names, where it goes."""

    name: str
    module: torch.nn.Module
    example: dict[str, np.ndarray]
    dynamic: tuple[int | None, ...]
    outputs: list[str]
    target: Path

    @property
    def staging(self) -> Path:
        return self.target.with_name(f".{self.target.name}.exporting")


def _parts(model, example: dict[str, np.ndarray], probes: list[np.ndarray], maxlen: int, target: Path, speaker_norm: bool) -> list[_Part]:
    """The graphs of an export: one (inputs to probabilities), or, for a model trained
    with ``speaker_norm``, the features graph, the statistics graph and the head graph
    (``<stem>.statistics.onnx`` and ``<stem>.head.onnx`` beside ``target``)."""
    time_axes = tuple(value.ndim - 1 if value.ndim > 1 else None for value in example.values())
    if not speaker_norm:
        return [_Part("main", _Graph(model).eval(), example, time_axes, [OUTPUT], target)]
    features = torch.stack(encode_waves(model, probes, maxlen))
    statistics = {name: value.numpy() for name, value in model.norm.statistics(features).items()}
    rows = {FEATURES: features.numpy()}
    sibling = lambda part: target.with_name(f"{target.stem}.{part}{target.suffix}")  # noqa: E731
    return [
        _Part("main", _Features(model).eval(), example, time_axes, [FEATURES], target),
        _Part("statistics", _Statistics(model).eval(), rows, (0,), list(statistics), sibling("statistics")),
        _Part("head", _Head(model, list(statistics)).eval(), {**rows, **statistics},
              (0, *[None] * len(statistics)), [OUTPUT], sibling("head")),
    ]


def _graph_record(part: _Part, folder: Path) -> OnnxGraph:
    return OnnxGraph(
        file=_relative(part.target, folder), sha256=sha256_file(part.target), bytes=part.target.stat().st_size,
        inputs=list(part.example), outputs=part.outputs,
    )


def _parity(tuned, parts: list[_Part], probes: list[np.ndarray]) -> float:
    """Largest |onnxruntime - PyTorch| over the probes' class probabilities (for a
    ``speaker_norm`` model: the probes as one speaker's, and as an enrolled speaker's)."""
    torch_scorer, info = tuned.scorer, tuned.info
    main, *rest = [session(part.staging) for part in parts]
    graphs = None
    if rest:
        enrolment = {s: {k: v.numpy() for k, v in stats.items()} for s, stats in torch_scorer.enrolment.items()}
        graphs = SpeakerGraphs(*rest, parts[1].outputs, enrolment)
    onnx_scorer = OnnxScorer(main, torch_scorer.model.onnx_inputs, info.maxlen, len(info.classes), graphs)
    speakers = [None, *torch_scorer.enrolled[:1]] if graphs is not None else [None]  # one: the same graph for each
    return max(
        float(np.abs(onnx_scorer.probabilities(probes, speaker) - torch_scorer.probabilities(probes, speaker)).max())
        for speaker in speakers
    )


def _onnx():
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter translates through it)
    except ImportError as exc:
        raise ModelError(f"serbench export needs {exc.name}: pip install 'serbench[onnx]'") from None
    return onnx


class _Graph(torch.nn.Module):
    """What the graph of a model without ``speaker_norm`` computes: ``model.onnx_module()``,
    ``model.classify``, a softmax. Each graph module takes its inputs as ``*inputs``,
    in the order of its example's names (one dynamic-shapes entry for all)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.encoder = model.onnx_module()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model.classify(self.encoder(*inputs)), dim=1)


class _Features(_Graph):
    """The features graph of a ``speaker_norm`` model: ``model.onnx_module()`` alone."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(*inputs)


class _Statistics(torch.nn.Module):
    """``model.norm.statistics`` of a group of pooled features, in its key order."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        (features,) = inputs
        return tuple(self.model.norm.statistics(features).values())


class _Head(torch.nn.Module):
    """``model.classify`` of a group of pooled features standardised with the statistics
    that follow them (in ``names``' order), a softmax."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        features, *statistics = inputs
        return torch.softmax(self.model.classify(features, dict(zip(self.names, statistics))), dim=1)


def _export(part: _Part) -> None:
    """``part.module`` traced on its example inputs, as ONNX at ``part.staging``, its
    dynamic axes dynamic."""
    args = tuple(torch.from_numpy(np.asarray(value)) for value in part.example.values())
    dynamic = tuple({axis: torch.export.Dim.DYNAMIC} if axis is not None else None for axis in part.dynamic)
    with _quiet(), torch.no_grad():
        try:
            torch.onnx.export(
                part.module,
                args,
                str(part.staging),
                input_names=list(part.example),
                output_names=part.outputs,
                opset_version=OPSET,
                dynamic_shapes=(dynamic,),  # one entry: every graph module takes *inputs
                dynamo=True,
                external_data=False,
                optimize=True,
                verbose=False,
            )
        except Exception as exc:  # torch.export / onnxscript errors: many types, many lines
            raise ModelError(f"{part.target}: torch.onnx.export failed ({exc.__class__.__name__}: {_first(exc)})") from None


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
    """Seeded noise of :data:`PROBE_SECONDS` (each at most ``maxlen``), shortest first;
    two at least (a ``speaker_norm`` model scores a group of two or more), even when
    ``maxlen`` cuts every probe to one length."""
    rng = np.random.default_rng(0)
    lengths = sorted({min(maxlen, round(s * rate)) if s is not None else maxlen for s in PROBE_SECONDS})
    lengths = lengths if len(lengths) > 1 else lengths * 2
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
