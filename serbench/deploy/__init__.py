"""The saved final model: ``model.json`` and its weights, loaded as a :class:`TunedModel`
that labels new audio (re-exports ``load_model``, ``TunedModel``, ``ModelInfo``)."""

from serbench.deploy.format import FORMAT_VERSION, ModelInfo
from serbench.deploy.load import load_model
from serbench.deploy.predictor import FilePrediction, TunedModel, WindowPrediction

__all__ = ["FORMAT_VERSION", "ModelInfo", "load_model", "TunedModel", "FilePrediction", "WindowPrediction"]
