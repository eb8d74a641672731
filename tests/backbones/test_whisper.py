"""The Whisper backbone on the shared pre-trained weights."""

import numpy as np
import pytest
import torch
from safetensors import safe_open
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

from serbench.backbones.base import resolve_source
from serbench.data.audio import load_audio
from serbench.errors import DataError, ModelError
from serbench.data.folds import take_subset
from serbench.spec import SubsetSpec
from serbench.backbones.whisper import WhisperBackbone, WhisperOptions
from serbench.data.adapters.emodb import EmoDB


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
        # Encoder-only folders store "encoder.*"; the hub's full checkpoints "model.encoder.*".
        stored_names = set(stored.keys())
        for name in ("encoder.conv1.weight", "encoder.layers.3.fc2.weight", "encoder.layer_norm.bias"):
            key = name if name in stored_names else f"model.{name}"
            assert key in stored_names, f"{name} is not in the checkpoint under either name"
            expected = stored.get_tensor(key).float()
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


def frozen(tiny_whisper, **options):
    torch.manual_seed(0)
    model = WhisperBackbone(str(tiny_whisper), WhisperOptions(**options)).build(7)
    model.set_encoder_trainable(False)
    return model.eval()


def test_pad_30s_is_whispers_own_encoder_pooled_over_the_clip(tiny_whisper, waves):
    model = frozen(tiny_whisper, pad="30s", layers="last")
    wave = waves[0]
    mel = model.feature_extractor(wave, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        reference = model.encoder(mel).last_hidden_state[0, : -(-len(wave) // 320)].mean(dim=0)
        ours = model.encode([wave], 64000)[0]
    assert mel.shape[-1] == 3000
    assert torch.allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("pad", ["maxlen", "30s"])
def test_padded_policies_give_the_same_features_alone_or_batched(tiny_whisper, waves, pad):
    model = frozen(tiny_whisper, pad=pad)
    cut = [w[:64000] for w in waves]
    with torch.no_grad():
        alone = torch.cat([model.encode([w], 64000) for w in cut])
        batched = model.encode(cut, 64000)
    assert torch.allclose(alone, batched, atol=1e-4)


def test_pad_policies_change_the_features(tiny_whisper, waves):
    with torch.no_grad():
        none = frozen(tiny_whisper, pad="none").encode(waves[:1], 64000)
        to_maxlen = frozen(tiny_whisper, pad="maxlen").encode(waves[:1], 64000)
        to_30s = frozen(tiny_whisper, pad="30s").encode(waves[:1], 64000)
    assert not torch.allclose(none, to_maxlen, atol=1e-3)
    assert not torch.allclose(to_maxlen, to_30s, atol=1e-3)


def test_weighted_layers_encode_every_hidden_state_and_start_as_their_mean(tiny_whisper, waves):
    weighted = frozen(tiny_whisper, layers="weighted")
    with torch.no_grad():
        per_layer = weighted.encode(waves)
        mean = frozen(tiny_whisper, layers="mean").encode(waves)
        last = frozen(tiny_whisper, layers="last").encode(waves)
    assert per_layer.shape == (3, 5, 384)  # tiny.en: 4 layers + the input embeddings
    assert torch.allclose(per_layer[:, 1:].mean(dim=1), mean, atol=1e-5)
    assert torch.allclose(per_layer[:, -1], last, atol=1e-5)
    assert torch.allclose(weighted.norm.weights(), torch.full((5,), 0.2))
    assert weighted.norm.logits.requires_grad and weighted.norm.logits in set(weighted.trainable_parameters())


def test_unknown_pad_policy_is_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="pad"):
        WhisperOptions(pad="10s")


@pytest.mark.parametrize("pad", ["none", "maxlen"])
def test_prefix_states_give_the_encoders_own_features(tiny_whisper, waves, pad):
    model = frozen(tiny_whisper, pad=pad, layers="weighted", train_layers=1)
    whole = frozen(tiny_whisper, pad=pad, layers="weighted")
    cut = [w[:48000] for w in waves]
    states = model.encode_prefix(cut, 48000)  # batched, as a cache fills
    with torch.no_grad():
        direct = whole.encode(cut, 48000)
        alone = torch.cat([model.encode_from_prefix([s], [len(w)]) for s, w in zip(states, cut)])
    assert [s.shape[0] for s in states][0] > model.prefix_rows == 4  # 3 frozen layers + embeddings
    assert torch.allclose(alone, direct, atol=1e-5)


def test_train_layers_trains_only_the_top_layers(tiny_whisper):
    model = frozen(tiny_whisper, train_layers=1)
    model.set_encoder_trainable(True)
    model.train()
    trained = {id(p) for p in model.encoder_parameters()}
    top = {id(p) for p in [*model.encoder.layers[-1].parameters(), *model.encoder.layer_norm.parameters()]}
    assert trained == top
    assert not any(p.requires_grad for p in model.encoder.conv1.parameters())
    assert not model.encoder.layers[0].training and model.encoder.layers[-1].training
    assert not {id(p) for p in model.trainable_parameters()} & {id(p) for p in model.encoder.layers[0].parameters()}


def test_train_layers_out_of_range_is_a_model_error(tiny_whisper):
    with pytest.raises(ModelError, match="train_layers: 5 is out of range 1..4"):
        frozen(tiny_whisper, train_layers=5)


def test_a_variant_with_other_options_shares_the_loaded_weights_and_builds_its_own_model(tiny_whisper, waves):
    base = WhisperBackbone(str(tiny_whisper), WhisperOptions(layers="mean"))
    assert base.with_options({"layers": "mean"}) is base  # nothing changes: the same backbone
    variant = base.with_options({"pooling": "mean+std", "layers": "last"})
    assert (variant.options.pooling, variant.options.layers, variant.source) == ("mean+std", "last", base.source)
    assert base.options.pooling == "mean"  # the job's own backbone is unchanged
    assert variant.pretrained() is base.pretrained()  # read once for both
    assert variant.cache_key() != base.cache_key()
    alone = WhisperBackbone(str(tiny_whisper), WhisperOptions(layers="last", pooling="mean+std")).build(3).eval()
    with torch.no_grad():
        assert torch.allclose(variant.build(3).eval().encode(waves[:1]), alone.encode(waves[:1]), atol=1e-6)
    with pytest.raises(ValueError):
        base.with_options({"pooling": "attention", "layers": "weighted"})
