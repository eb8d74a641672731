"""Pre-trained encoders: the backbone contract (:mod:`.base`), the model it builds
(:mod:`.model`: ``SERModel``, head, standardisation, layer mix) and the built-ins, each a
light plugin module (no torch at import) beside its model module: ``whisper`` /
``whisper_model``, ``speechbrain_wav2vec2`` / ``speechbrain_wav2vec2_model``."""

from serbench.backbones.base import Backbone, resolve_source

__all__ = ["Backbone", "resolve_source"]
