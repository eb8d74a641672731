"""Attention pooling (``backbone.options.pooling: attention`` / ``attention+std``) on real
EmoDB audio and real Whisper tiny.en weights: it starts as the plain mean, padding gets no
weight, its parameters belong to the head (they train while the encoder is frozen, from
cached frames, and are what a trained state holds), the statistics follow it, and the
combinations it does not support are refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error
from serbench.backbones.model import AttentionPool
from serbench.backbones.whisper import WhisperBackbone
from serbench.data.adapters.emodb import EmoDB
from serbench.data.audio import load_audio
from serbench.data.base import Clip
from serbench.data.folds import take_subset
from serbench.errors import ModelError
from serbench.spec import SubsetSpec, TrainParams
from serbench.training.features import FeatureCache, encode_batched
from serbench.training.fit import fit, logits_of
from serbench.training.grouping import group_statistics

MAXLEN = 24000


@pytest.fixture(scope="module")
def utterances(emodb_root):
    return take_subset(EmoDB().scan(emodb_root).utterances, SubsetSpec(per_class=2), seed=0)


@pytest.fixture(scope="module")
def clips(utterances):
    return [Clip(u.id, load_audio(u.path), EmoDB.classes.index(u.label)) for u in utterances]


@pytest.fixture(scope="module")
def speakers(utterances):
    return [u.speaker for u in utterances]


def build(seed=0, **options):
    torch.manual_seed(seed)
    return WhisperBackbone("openai/whisper-tiny.en", WhisperBackbone.Options(**options)).build(7)


def scramble(model, seed=1):
    """Give the attention non-uniform weights (as training would), reproducibly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.pool.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))


def waves_of(clips, n=3):
    """``n`` clips cut to different lengths (at most ``MAXLEN``): a batch with padding."""
    return [c.wave[: MAXLEN - 4100 * i] for i, c in enumerate(clips[:n])]


# --- what it computes -------------------------------------------------------------------


@pytest.mark.parametrize("layers", ["mean", "last", 2])
def test_attention_starts_as_the_mean(clips, layers):
    """Zero-initialised scores: uniform weights, the plain mean over the clip's frames
    (for ``layers: mean``, the mean of the layers' means)."""
    mean = build(layers=layers).eval()
    attention = build(layers=layers, pooling="attention").eval()
    assert attention.feature_dim == mean.feature_dim and attention.pool is not None and mean.pool is None
    waves = waves_of(clips)
    assert len({len(w) for w in waves}) == len(waves)  # a padded batch
    with torch.no_grad():
        plain, attended = mean.encode(waves, MAXLEN), attention.encode(waves, MAXLEN)
    assert torch.allclose(attended, plain, atol=1e-5), (attended - plain).abs().max()


def test_attention_std_starts_as_mean_std_of_one_layer(clips):
    paired = build(layers=2, pooling="mean+std").eval()
    attentive = build(layers=2, pooling="attention+std").eval()
    assert attentive.feature_dim == paired.feature_dim == 2 * 384
    with torch.no_grad():
        assert torch.allclose(attentive.encode(waves_of(clips), MAXLEN), paired.encode(waves_of(clips), MAXLEN), atol=1e-5)


@pytest.mark.parametrize("pad", ["none", "maxlen"])
def test_padding_gets_no_attention(clips, pad):
    """With trained-looking (non-uniform) weights, a clip pools the same alone as in a
    padded batch: other clips' padding (and, padded, the silence) gets weight zero."""
    model = build(pooling="attention+std", pad=pad).eval()
    scramble(model)
    waves = waves_of(clips, 4)
    with torch.no_grad():
        batched = model.encode(waves, MAXLEN)
        alone = torch.cat([model.encode([w], MAXLEN) for w in waves])
        frames = model.encode_frames(waves, MAXLEN)
    assert torch.allclose(batched, alone, atol=1e-4), (batched - alone).abs().max()
    # each clip's frames are its own (unpadded: its output frames; padded: those holding
    # samples, ceil(samples / 320)), not padding
    own = [-(-len(w) // 320) if pad == "maxlen" else len(w) // 320 for w in waves]
    assert [len(f) for f in frames] == own
    lengths = torch.tensor([len(f) for f in frames])
    x = torch.zeros(len(frames), int(lengths.max()), 384)
    for i, f in enumerate(frames):
        x[i, : len(f)] = f
    valid = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    with torch.no_grad():
        weights = model.pool.weights(x, valid)
    assert torch.all(weights[~valid] == 0)
    assert torch.allclose(weights.sum(dim=1), torch.ones(len(frames)))
    assert weights[valid].std() > 0  # not the uniform start: the test would pass trivially


def test_the_attention_pools_the_frames_of_the_selected_layer():
    """Against a hand computation on known frames: softmax of v^T tanh(W h + b)."""
    torch.manual_seed(0)
    pool = AttentionPool(5, hidden=3)
    scramble_pool = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in pool.parameters():
            param.copy_(torch.randn(param.shape, generator=scramble_pool))
    h = torch.randn(1, 4, 5)
    valid = torch.tensor([[True, True, True, False]])
    scores = (torch.tanh(h[0, :3] @ pool.project.weight.T + pool.project.bias) @ pool.score.weight.T)[:, 0]
    expected = (torch.softmax(scores, dim=0)[:, None] * h[0, :3]).sum(dim=0)
    assert torch.allclose(pool(h, valid)[0], expected, atol=1e-6)


# --- it belongs to the head -------------------------------------------------------------


def test_attention_parameters_are_the_heads_and_get_gradients_while_the_encoder_is_frozen(clips):
    model = build(pooling="attention")
    model.set_encoder_trainable(False)
    model.train()
    pool_params = set(map(id, model.pool.parameters()))
    assert not pool_params & set(map(id, model.encoder_parameters()))
    assert pool_params <= set(map(id, model.trainable_parameters()))
    assert all(p.requires_grad for p in model.pool.parameters())
    logits = model(waves_of(clips))
    torch.nn.functional.cross_entropy(logits, torch.tensor([c.label for c in clips[:3]])).backward()
    assert model.pool.score.weight.grad.abs().sum() > 0  # v: W, b get gradients once v is not zero
    assert all(p.grad is None for p in model.encoder_parameters())


def test_a_frozen_fit_trains_the_attention_from_cached_frames(clips):
    """unfreeze beyond the epochs: the encoder never trains, the attention does; the cache
    holds each clip's frames once (never a pooled vector), and scoring from the cache equals
    encoding afresh. The statistics are refitted to what the attention pools."""
    model = build(pooling="attention")
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    pool_before = {k: v.clone() for k, v in model.pool.state_dict().items()}
    cache = FeatureCache("attention-frozen-fit")
    pooled_after_first: list[torch.Tensor] = []

    def after_epoch(done: int) -> bool:
        if done == 1:
            pooled_after_first.append(torch.stack(encode_batched(model, clips, MAXLEN)))
        return False

    params = TrainParams(lr=3e-3, epochs=2, unfreeze=5, maxlen=MAXLEN, batch_size=4)
    fit(model, clips, params, seed=0, cache=cache, after_epoch=after_epoch)
    assert model.encoder_pristine
    assert all(torch.equal(v, encoder_before[k]) for k, v in model.encoder.state_dict().items())
    assert all(not torch.allclose(v, pool_before[k]) for k, v in model.pool.state_dict().items())
    assert cache.misses == len(clips)  # each clip encoded once, for the whole fit
    entry = cache.store.get(cache.key(model, clips[0], MAXLEN, "frames"))
    assert entry is not None and entry.ndim == 2 and entry.shape[1] == 384  # frames, (T, D)
    assert cache.store.get(cache.key(model, clips[0], MAXLEN)) is None  # no pooled entry
    # the pooled vectors are no longer the mean
    with torch.no_grad():
        assert not torch.allclose(model.encode(waves_of(clips), MAXLEN), build().eval().encode(waves_of(clips), MAXLEN), atol=1e-4)
    # epoch 2 trained on the statistics of what the attention pooled after epoch 1
    expected = model.norm.statistics(pooled_after_first[0])
    assert torch.allclose(model.norm.mean, expected["mean"], atol=1e-5)
    assert torch.allclose(model.norm.std, expected["std"], atol=1e-5)
    assert np.allclose(logits_of(model, clips, MAXLEN, cache), logits_of(model, clips, MAXLEN), atol=1e-5)


def test_speaker_norm_statistics_follow_the_attention(clips, speakers):
    model = build(pooling="attention")
    params = TrainParams(lr=3e-3, epochs=2, unfreeze=5, maxlen=MAXLEN, batch_size=4, speaker_norm=True)
    fit(model, clips, params, seed=0, cache=FeatureCache("attention-speaker-norm"), speakers=speakers)
    features = torch.stack(encode_batched(model, clips, MAXLEN))
    for who, stats in group_statistics(model, features, speakers).items():
        rows = [i for i, s in enumerate(speakers) if s == who]
        with torch.no_grad():
            assert model.norm(features[rows], stats).mean(dim=0).abs().max() < 1e-3
    logits = logits_of(model, clips, MAXLEN, speakers=speakers)
    assert logits.shape == (len(clips), 7)


def test_the_trained_state_holds_the_attention_and_reloads_to_the_same_predictions(clips):
    model = build(pooling="attention+std")
    fit(model, clips, TrainParams(lr=3e-3, epochs=2, unfreeze=5, maxlen=MAXLEN, batch_size=4), seed=0)
    state = model.trained_state()
    assert {name for name in state if name.startswith("pool.")} == {
        "pool.project.weight", "pool.project.bias", "pool.score.weight"}
    assert not any(name.startswith("encoder.") for name in state)  # the encoder stayed frozen
    fresh = build(seed=5, pooling="attention+std")  # another head initialisation
    assert not torch.equal(fresh.pool.project.weight, model.pool.project.weight)
    fresh.load_trained_state(state)
    assert fresh.encoder_pristine
    assert np.array_equal(logits_of(fresh, clips, MAXLEN), logits_of(model, clips, MAXLEN))


# --- what it refuses --------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, needle",
    [({"layers": "weighted"}, "layers 'weighted'"), ({"train_layers": 1}, "train_layers")],
)
def test_unsupported_combinations_are_refused_in_one_line(cli, job_dict, write_job, options, needle):
    job_dict["backbone"]["options"] = {"pooling": "attention", **options}
    code, _, err = cli("validate", write_job(job_dict))
    line = assert_one_line_error(code, err, "backbone.options.pooling", needle)
    assert "attention" in line
    # and when a model is built (e.g. from options that bypassed the job file)
    from serbench.backbones.whisper_model import WhisperSER

    encoder, extractor = WhisperBackbone("openai/whisper-tiny.en").pretrained()
    with pytest.raises(ModelError, match="does not combine") as caught:
        WhisperSER(encoder, extractor, options.get("layers", "mean"), 7, "none", options.get("train_layers"), "attention")
    assert "\n" not in str(caught.value)
