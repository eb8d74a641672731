"""Every built-in backbone keeps the backbone contract (serbench.testing.backbones), one
test per clause: whisper on the real whisper-tiny.en weights, speechbrain-wav2vec2 on the
offline checkpoint of tests/backbones/conftest.py, both on real EmoDB clips. The kit's own
verdicts are checked on backbones broken on purpose."""

import numpy as np
import pytest
import torch

from serbench.backbones.speechbrain_wav2vec2 import SpeechBrainWav2Vec2Backbone
from serbench.backbones.whisper import WhisperBackbone
from serbench.backbones.model import SERModel
from serbench.data.audio import load_audio
from serbench.data.base import Clip
from serbench.data.adapters.emodb import EmoDB
from serbench.plugin.registry import registry
from serbench.testing.backbones import (
    CONTRACT_CHECKS,
    BackboneContractError,
    check_batch_invariance,
    check_cache_key,
    check_deterministic,
    check_frozen_unchanged,
    check_input_key,
    check_prefix_states,
    check_unfrozen_trains,
)
from serbench.testing.contract import ContractError

# EmoDB clips of 2.1 to 3.6 s (one per speaker and emotion picked by name, not at random).
CLIP_FILES = ("03a01Fa.wav", "08b03Tc.wav", "16b10Wb.wav")

# case -> (class, which source, options); the second whisper case has a cacheable frozen
# prefix (train_layers) and a learned layer mix, the third a learned (attention) pooling.
CASES = {
    "whisper": (WhisperBackbone, "whisper-tiny.en", {}),
    "whisper-weighted-top2": (WhisperBackbone, "whisper-tiny.en", {"layers": "weighted", "train_layers": 2}),
    # a learned pooling in the head (attentive statistics), under silence up to maxlen
    "whisper-attention-maxlen": (WhisperBackbone, "whisper-tiny.en", {"pooling": "attention+std", "pad": "maxlen"}),
    "speechbrain-wav2vec2": (SpeechBrainWav2Vec2Backbone, "speechbrain-checkpoint", {}),
}


@pytest.fixture(scope="module")
def clips(emodb_root):
    by_name = {u.path.name: u for u in EmoDB().scan(emodb_root).utterances}
    return [
        Clip(name, load_audio(by_name[name].path), EmoDB.classes.index(by_name[name].label)) for name in CLIP_FILES
    ]


@pytest.fixture(scope="module")
def sources(tiny_whisper, speechbrain_checkpoint):
    return {"whisper-tiny.en": str(tiny_whisper), "speechbrain-checkpoint": str(speechbrain_checkpoint)}


def test_every_built_in_backbone_has_a_case():
    built_in = {entry.cls for entry in registry().entries("backbone") if entry.package == "serbench"}
    assert built_in == {cls for cls, _, _ in CASES.values()}


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
@pytest.mark.parametrize("case", list(CASES))
def test_built_in_backbones_keep_the_contract(case, check, sources, clips):
    backbone_cls, source, options = CASES[case]
    check(backbone_cls, sources[source], options, clips)


# --- the kit finds what is broken ----------------------------------------------------------


class Unkeyed(WhisperBackbone):
    """Forgets an option in its cache key."""

    def describe(self):
        described = super().describe()
        described["options"].pop("pad")
        return described


class Jittery(WhisperBackbone):
    """Adds noise to every encode, as StatisticsPooling's jitter would."""

    def build(self, num_classes):
        model = super().build(num_classes)
        encode = model._encode_cut

        def noisy(waves, maxlen):
            features = encode(waves, maxlen)
            return features + 1e-4 * torch.randn_like(features)

        model._encode_cut = noisy
        return model


class FlagOnlyFreeze(WhisperBackbone):
    """Freezing that only sets the flag: the encoder keeps requiring gradients and its
    forward keeps building a graph, so frozen epochs train it."""

    def build(self, num_classes):
        model = super().build(num_classes)
        encode = model._encode_cut

        def set_encoder_trainable(trainable):
            model.encoder_trainable = trainable

        def encode_with_grad(waves, maxlen=None):
            with torch.enable_grad():
                return encode(waves, maxlen)

        model.set_encoder_trainable = set_encoder_trainable
        model.encode = encode_with_grad
        return model


class UnmaskedBatch(WhisperBackbone):
    """Pools a batch over the padded frames too (the batch's longest clip's length)."""

    def build(self, num_classes):
        model = super().build(num_classes)
        encode = model._encode_cut

        def padded(waves, maxlen):
            longest = max(len(w) for w in waves)
            return encode([np.pad(w, (0, longest - len(w))) for w in waves], maxlen)

        model._encode_cut = padded
        return model


class PadsToMaxlenUnkeyed(WhisperBackbone):
    """Pads to maxlen, but keys features on the cut length alone."""

    def build(self, num_classes):
        model = super().build(num_classes)
        model.input_key = lambda samples, maxlen: SERModel.input_key(model, samples, maxlen)
        return model


class NeverUnfreezes(WhisperBackbone):
    """The encoder stays frozen when asked to train."""

    def build(self, num_classes):
        model = super().build(num_classes)
        original = model.set_encoder_trainable
        model.set_encoder_trainable = lambda trainable: original(False)
        return model


class StalePrefix(WhisperBackbone):
    """Features from cached prefix states that are not ``encode``'s."""

    def build(self, num_classes):
        model = super().build(num_classes)
        from_prefix = model.encode_from_prefix  # what a feature cache calls; encode() is left as it is
        model.encode_from_prefix = lambda states, samples: from_prefix(states, samples) + 1e-2
        return model


@pytest.mark.parametrize(
    "broken, check, options, clause",
    [
        (Unkeyed, check_cache_key, {}, "cache key"),
        (Jittery, check_deterministic, {}, "deterministic features"),
        (FlagOnlyFreeze, check_frozen_unchanged, {}, "frozen means unchanged"),
        (UnmaskedBatch, check_batch_invariance, {}, "a clip alone = in a batch"),
        (PadsToMaxlenUnkeyed, check_input_key, {"pad": "maxlen"}, "input key"),
        (NeverUnfreezes, check_unfrozen_trains, {}, "unfrozen trains"),
        (StalePrefix, check_prefix_states, {"train_layers": 2}, "prefix states"),
    ],
    ids=["cache-key", "deterministic", "frozen", "batch", "input-key", "unfrozen", "prefix"],
)
def test_the_kit_names_the_broken_clause(broken, check, options, clause, tiny_whisper, clips):
    with pytest.raises(BackboneContractError) as error:
        check(broken, str(tiny_whisper), options, clips)
    assert error.value.clause == clause
    assert isinstance(error.value, ContractError) and isinstance(error.value, AssertionError)
    assert str(error.value).startswith(f"backbone 'whisper' breaks '{clause}': ")


def test_the_kit_asks_for_an_alternative_it_cannot_invent(tiny_whisper):
    """An option of a type the kit cannot vary needs ``alternatives``; with one, a key that
    ignores the option is caught."""
    from pydantic import Field

    from serbench.spec import StrictModel

    class WindowOptions(StrictModel):
        window: tuple[int, int] = Field((1, 2))

    class Windowed(WhisperBackbone):
        Options = WindowOptions

    class Unwindowed(Windowed):
        def describe(self):
            described = super().describe()
            described["options"].pop("window")
            return described

    with pytest.raises(ValueError, match=r"alternatives=\{'window': value\}"):
        check_cache_key(Windowed, str(tiny_whisper))
    check_cache_key(Windowed, str(tiny_whisper), alternatives={"window": (3, 4)})
    with pytest.raises(BackboneContractError, match=r"option window=\(3, 4\) gives the same cache key"):
        check_cache_key(Unwindowed, str(tiny_whisper), alternatives={"window": (3, 4)})
