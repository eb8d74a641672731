"""The ONNX runtime of a saved model: the graph ``serbench export`` wrote
(:mod:`serbench.deploy.onnx_export`), run by onnxruntime on the CPU, one input at a time.

Scored as :class:`~serbench.deploy.torch_runtime.TorchScorer` scores (each input cut to
``maxlen``; class probabilities in the order of ``model.json``'s classes). The graph's
inputs come from the backbone's front end (``Backbone.onnx_front_end``, e.g. a log-mel
computed from the feature extractor's settings), so the encoder's PyTorch weights are
never loaded. onnxruntime runs as many threads as torch would here
(``torch.get_num_threads()``, which serbench sizes from the CPU limits in force).

A model trained with ``speaker_norm`` has three graphs: the main one gives each input's
pooled features, the statistics graph a group's norm statistics, and the head graph the
probabilities of a group standardised with given statistics. The inputs of one call are
one speaker's, standardised with their own statistics (two or more), or with an enrolled
speaker's training statistics, read from the model's weight file (its
``enrolment/<speaker>/<stat>`` tensors only): :class:`~serbench.deploy.speakers.SpeakerRule`.

Refused with one line (``ModelError``) before any session starts: a folder with no
export record (``onnx.json``) or a graph it names missing, a graph whose sha256 differs
from the record (altered since), and a record of an export from other weights or other
pre-trained files than the folder's ``model.json`` names (the model changed since:
export again).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from serbench.data.manifest import sha256_file
from serbench.backbones.model import ENROLMENT, split_enrolment
from serbench.deploy.format import ModelInfo, read_onnx_info
from serbench.deploy.speakers import SpeakerRule
from serbench.errors import ModelError

if TYPE_CHECKING:
    from serbench.backbones.base import Backbone

FrontEnd = Callable[[np.ndarray, int], dict[str, np.ndarray]]
FEATURES = "features"  # the pooled features: the main graph's output and the others' first input (speaker_norm)


def graph_path(folder: Path, file: str) -> Path:
    """A graph the record names (``file``: relative to ``folder``, or absolute)."""
    return folder / file


def session(path: Path):
    """An onnxruntime session on ``path``: CPU provider, ``torch.get_num_threads()``
    threads within an operator, one across operators."""
    import torch

    try:
        import onnxruntime
    except ImportError:
        raise ModelError("the onnx runtime needs onnxruntime: pip install 'serbench[onnx]'") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types (InvalidGraph, Fail, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"{path}: onnxruntime cannot load this graph ({first})") from None


class OnnxScorer(SpeakerRule):
    """Class probabilities of 16 kHz mono inputs (each at most ``maxlen`` samples).

    ``speaker_norm``: the statistics and head sessions of a model trained with it, and
    its enrolled speakers' statistics (name -> array); ``None`` for a one-graph model."""

    name = "onnx"

    def __init__(self, session, front_end: FrontEnd, maxlen: int, classes: int, speaker_norm: "SpeakerGraphs | None" = None):
        self.session = session
        self.front_end = front_end
        self.maxlen = maxlen
        self.classes = classes
        self.graphs = speaker_norm

    @property
    def speaker_norm(self) -> bool:
        return self.graphs is not None

    @property
    def enrolment(self) -> dict[str, dict[str, np.ndarray]]:
        return self.graphs.enrolment if self.graphs is not None else {}

    @classmethod
    def load(cls, folder: Path, backbone: "Backbone", info: ModelInfo) -> "OnnxScorer":
        """The export recorded in ``folder/onnx.json``, checked against ``info`` (see the module)."""
        record = read_onnx_info(folder)
        again = f"run serbench export {folder} --format onnx"
        if record.weights_sha256 != info.weights.sha256:
            raise ModelError(
                f"{graph_path(folder, record.file)}: exported from other weights than the model's {info.weights.file} "
                f"(sha256 {record.weights_sha256[:12]}…, now {info.weights.sha256[:12]}…); {again} again"
            )
        if record.pretrained_fingerprint != info.backbone.fingerprint:
            raise ModelError(
                f"{graph_path(folder, record.file)}: exported from other pre-trained {info.backbone.name} files "
                f"than model.json records; {again} again"
            )
        main = checked_session(folder, record.file, record.sha256, record.inputs, again)
        graphs = None
        if record.speaker_norm is not None:
            parts = {name: checked_session(folder, g.file, g.sha256, g.inputs, again)
                     for name, g in (("statistics", record.speaker_norm.statistics), ("head", record.speaker_norm.head))}
            outputs = record.speaker_norm.statistics.outputs
            graphs = SpeakerGraphs(parts["statistics"], parts["head"], outputs, enrolled_statistics(folder / info.weights.file))
        return cls(main, backbone.onnx_front_end(), info.maxlen, len(info.classes), graphs)

    def probabilities(self, waves: Sequence[np.ndarray], speaker: str | None = None) -> np.ndarray:
        """``(len(waves), classes)`` probabilities, in the order of ``waves``; a model
        trained with ``speaker_norm`` scores them as one speaker's (see the module)."""
        self.check_group(len(waves), speaker)
        if not waves:
            return np.zeros((0, self.classes), dtype=np.float32)
        rows = np.stack([self.session.run(None, self.front_end(wave[: self.maxlen], self.maxlen))[0][0] for wave in waves])
        if self.graphs is None:
            return rows
        return self.graphs.probabilities(rows, self.enrolment.get(speaker) if speaker is not None else None)


class SpeakerGraphs:
    """The statistics and head sessions of a ``speaker_norm`` export, the statistics'
    names (in the head's input order after ``features``) and the enrolled speakers'."""

    def __init__(self, statistics, head, names: list[str], enrolment: dict[str, dict[str, np.ndarray]]):
        self.statistics, self.head, self.names, self.enrolment = statistics, head, names, enrolment

    def probabilities(self, features: np.ndarray, statistics: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Probabilities of ``features`` ``(N, ...)`` standardised with ``statistics``, by
        default their own."""
        if statistics is None:
            statistics = dict(zip(self.names, self.statistics.run(None, {FEATURES: features})))
        return self.head.run(None, {FEATURES: features, **{name: statistics[name] for name in self.names}})[0]


def checked_session(folder: Path, file: str, sha256: str, inputs: list[str], again: str):
    """A session on the graph ``file`` after checking it is there, unaltered (``sha256``)
    and takes ``inputs``; ``ModelError`` (one line, ending in ``again``) otherwise."""
    path = graph_path(folder, file)
    if not path.is_file():
        raise ModelError(f"{path}: the ONNX graph onnx.json records is missing: {again} first")
    if sha256_file(path) != sha256:
        raise ModelError(f"{path}: its sha256 differs from the one onnx.json records (the file was altered); {again} again")
    scorer = session(path)
    names = [i.name for i in scorer.get_inputs()]
    if names != inputs:
        raise ModelError(f"{path}: the graph's inputs ({', '.join(names)}) are not those onnx.json records; {again} again")
    return scorer


def enrolled_statistics(weights: Path) -> dict[str, dict[str, np.ndarray]]:
    """The enrolled speakers' statistics in the weight file, as numpy arrays (only those
    tensors are read)."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="numpy") as handle:
        state = {name: handle.get_tensor(name) for name in handle.keys() if name.startswith(ENROLMENT)}
    return split_enrolment(state)[1]
