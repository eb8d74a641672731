"""The ONNX runtime of a saved model: the graph ``serbench export`` wrote
(:mod:`serbench.deploy.onnx_export`), run by onnxruntime on the CPU, one input at a time.

Scored as :class:`~serbench.deploy.torch_runtime.TorchScorer` scores (each input cut to
``maxlen``; class probabilities in the order of ``model.json``'s classes). The graph's
inputs come from the backbone's front end (``Backbone.onnx_front_end``, e.g. a log-mel
computed from the feature extractor's settings), so the encoder's PyTorch weights are
never loaded. onnxruntime runs as many threads as torch would here
(``torch.get_num_threads()``, which serbench sizes from the CPU limits in force).

Refused with one line (``ModelError``) before any session starts: a folder with no
export record (``onnx.json``) or no graph, a graph whose sha256 differs from the record
(altered since), and a record of an export from other weights or other pre-trained files
than the folder's ``model.json`` names (the model changed since: export again).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from serbench.data.manifest import sha256_file
from serbench.deploy.format import ModelInfo, OnnxInfo, read_onnx_info
from serbench.errors import ModelError

if TYPE_CHECKING:
    from serbench.backbones.base import Backbone

FrontEnd = Callable[[np.ndarray, int], dict[str, np.ndarray]]


def graph_path(folder: Path, record: OnnxInfo) -> Path:
    """The graph ``record`` names (relative to ``folder``, or absolute)."""
    return folder / record.file


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


class OnnxScorer:
    """Class probabilities of 16 kHz mono inputs (each at most ``maxlen`` samples)."""

    name = "onnx"

    def __init__(self, session, front_end: FrontEnd, maxlen: int, classes: int):
        self.session = session
        self.front_end = front_end
        self.maxlen = maxlen
        self.classes = classes

    @classmethod
    def load(cls, folder: Path, backbone: "Backbone", info: ModelInfo) -> "OnnxScorer":
        """The export recorded in ``folder/onnx.json``, checked against ``info`` (see the module)."""
        record = read_onnx_info(folder)
        path = graph_path(folder, record)
        again = f"run serbench export {folder} --format onnx"
        if not path.is_file():
            raise ModelError(f"{path}: the ONNX graph onnx.json records is missing: {again} first")
        if sha256_file(path) != record.sha256:
            raise ModelError(f"{path}: its sha256 differs from the one onnx.json records (the file was altered); {again} again")
        if record.weights_sha256 != info.weights.sha256:
            raise ModelError(
                f"{path}: exported from other weights than the model's {info.weights.file} "
                f"(sha256 {record.weights_sha256[:12]}…, now {info.weights.sha256[:12]}…); {again} again"
            )
        if record.pretrained_fingerprint != info.backbone.fingerprint:
            raise ModelError(f"{path}: exported from other pre-trained {info.backbone.name} files than model.json records; {again} again")
        scorer = session(path)
        names = [i.name for i in scorer.get_inputs()]
        if names != record.inputs:
            raise ModelError(f"{path}: the graph's inputs ({', '.join(names)}) are not those onnx.json records; {again} again")
        return cls(scorer, backbone.onnx_front_end(), info.maxlen, len(info.classes))

    def probabilities(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """``(len(waves), classes)`` probabilities, in the order of ``waves``."""
        rows = [self.session.run(None, self.front_end(wave[: self.maxlen], self.maxlen))[0][0] for wave in waves]
        return np.stack(rows) if rows else np.zeros((0, self.classes), dtype=np.float32)
