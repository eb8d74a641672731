"""The Whisper backbone on the shared pre-trained weights."""

import numpy as np
import pytest
import torch
from safetensors import safe_open
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

from serbench.backbone import resolve_source
from serbench.dataset import load_audio
from serbench.errors import DataError, ModelError
from serbench.protocols import take_subset
from serbench.spec import SubsetSpec
from serbench_plugins.backbones.whisper import WhisperBackbone, WhisperOptions
from serbench_plugins.datasets.emodb import EmoDB


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = WhisperBackbone("openai/whisper-tiny.en").build(7)
    model.set_encoder_trainable(False)
    return model.eval()


@pytest.fixture(scope="module")
def waves(emodb_root):
    return [load_audio(emodb_root / "wav" / name) for name in ("03a01Fa.wav", "08b03Tc.wav", "16b10Wb.wav")]


def test_hub_id_resolves_to_the_local_folder(tiny_whisper):
    assert resolve_source("openai/whisper-tiny.en") == str(tiny_whisper)
    assert resolve_source(str(tiny_whisper)) == str(tiny_whisper)
    assert resolve_source("someone/unknown-model") == "someone/unknown-model"


def test_loads_the_pretrained_weights_in_float32(tiny, tiny_whisper):
    with safe_open(str(tiny_whisper / "model.safetensors"), "pt") as stored:
        for name in ("encoder.conv1.weight", "encoder.layers.3.fc2.weight", "encoder.layer_norm.bias"):
            expected = stored.get_tensor(name).float()
            actual = dict(tiny.named_parameters())[name]
            assert actual.dtype == torch.float32
            assert torch.equal(actual, expected)


def test_unknown_source_is_a_model_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="someone/unknown-model"):
        WhisperBackbone("someone/unknown-model").build(7)


def test_runs_unpadded_and_pools_over_the_clip(tiny, waves):
    with torch.no_grad():
        short = tiny.encode([waves[0]])
        cut = tiny.encode([waves[0][:16000]])
    assert short.shape == (1, 384)
    assert not torch.allclose(short, cut, atol=1e-3)  # the rest of the clip matters


def test_batching_with_padding_gives_the_same_features_as_alone(tiny, waves):
    with torch.no_grad():
        alone = torch.cat([tiny.encode([w]) for w in waves])
        batched = tiny.encode(waves)
    assert torch.allclose(alone, batched, atol=1e-5)


@pytest.mark.parametrize("layers", ["last", "mean", 0, 2])
def test_layer_choices_give_distinct_features(tiny_whisper, waves, layers):
    torch.manual_seed(0)
    model = WhisperBackbone(str(tiny_whisper), WhisperOptions(layers=layers)).build(3).eval()
    reference = WhisperBackbone(str(tiny_whisper), WhisperOptions(layers=1)).build(3).eval()
    with torch.no_grad():
        assert not torch.allclose(model.encode(waves[:1]), reference.encode(waves[:1]))


def test_layer_index_out_of_range_is_a_model_error(tiny_whisper):
    with pytest.raises(ModelError, match="layers"):
        WhisperBackbone(str(tiny_whisper), WhisperOptions(layers=9)).build(7)


def test_a_clip_too_short_for_the_encoder_is_a_data_error(tiny):
    with pytest.raises(DataError, match="too short"):
        tiny.encode([np.zeros(200, dtype=np.float32)])


def test_frozen_features_carry_emotion(tiny, emodb_root):
    """A linear probe on frozen features beats chance (1/7) by far: the weights are real."""
    utterances = take_subset(EmoDB().scan(emodb_root).utterances, SubsetSpec(per_class=12), seed=0)
    speakers = sorted({u.speaker for u in utterances})
    held_out = set(speakers[:3])
    with torch.no_grad():
        features = torch.cat([tiny.encode([load_audio(u.path)[:48000]]) for u in utterances]).numpy()
    labels = np.array([u.label for u in utterances])
    test = np.array([u.speaker in held_out for u in utterances])
    scaler = StandardScaler().fit(features[~test])
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(features[~test]), labels[~test])
    bca = balanced_accuracy_score(labels[test], probe.predict(scaler.transform(features[test])))
    assert bca > 0.5
