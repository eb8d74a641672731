"""Fine-tuning: the encoder is frozen, then really trained; runs are deterministic;
the frozen-feature cache changes nothing but the cost."""

import pytest
import torch

from serbench.data.audio import load_audio
from serbench.data.folds import take_subset
from serbench.spec import SubsetSpec, TrainParams
from serbench.data.base import Clip
from serbench.training.features import FeatureCache
from serbench.training.fit import fit, predict
from serbench.backbones.whisper import WhisperBackbone
from serbench.data.adapters.emodb import EmoDB


@pytest.fixture(scope="module")
def backbone():
    return WhisperBackbone("openai/whisper-tiny.en")


@pytest.fixture(scope="module")
def clips(emodb_root):
    utterances = take_subset(EmoDB().scan(emodb_root).utterances, SubsetSpec(per_class=2), seed=0)
    return [Clip(u.id, load_audio(u.path), EmoDB.classes.index(u.label)) for u in utterances]


def fresh(backbone, seed=0):
    torch.manual_seed(seed)
    return backbone.build(7)


def encoder_state(model):
    return {name: p.detach().clone() for name, p in model.encoder.named_parameters()}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_encoder_is_unchanged_while_frozen_and_changes_once_unfrozen(backbone, clips):
    model = fresh(backbone)
    before = encoder_state(model)
    head_before = model.head.weight.detach().clone()
    snapshots = []
    params = TrainParams(lr=1e-3, epochs=3, unfreeze=2, maxlen=16000, batch_size=4)
    fit(model, clips, params, seed=0, on_epoch=lambda epoch, loss: snapshots.append(encoder_state(model)))
    assert same(before, snapshots[0]) and same(before, snapshots[1])
    assert not torch.equal(head_before, model.head.weight)
    changed = [k for k in before if not torch.equal(before[k], snapshots[2][k])]
    assert "layers.0.fc1.weight" in changed and "conv1.weight" in changed
    assert "embed_positions.weight" not in changed  # Whisper's fixed sinusoids
    assert not model.encoder_pristine


def test_unfreeze_at_or_after_the_last_epoch_never_trains_the_encoder(backbone, clips):
    model = fresh(backbone)
    before = encoder_state(model)
    fit(model, clips, TrainParams(lr=1e-3, epochs=2, unfreeze=2, maxlen=16000, batch_size=4), seed=0)
    assert same(before, encoder_state(model))
    assert model.encoder_pristine


def test_same_seed_same_weights(backbone, clips):
    params = TrainParams(lr=1e-3, epochs=2, unfreeze=1, maxlen=16000, batch_size=2)
    a, b, c = fresh(backbone), fresh(backbone), fresh(backbone)
    fit(a, clips, params, seed=3)
    fit(b, clips, params, seed=3)
    fit(c, clips, params, seed=4)
    assert torch.equal(a.head.weight, b.head.weight)
    assert same(encoder_state(a), encoder_state(b))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_cached_and_uncached_frozen_training_give_the_same_head(backbone, clips):
    params = TrainParams(lr=1e-3, epochs=3, unfreeze=3, maxlen=24000, batch_size=1)
    cache = FeatureCache(backbone.cache_key())
    cached, uncached = fresh(backbone), fresh(backbone)
    fit(cached, clips, params, seed=0, cache=cache)
    fit(uncached, clips, params, seed=0, cache=None)
    assert len(cache) == len(clips)
    assert cache.misses == len(clips) and cache.hits > 0
    assert torch.allclose(cached.head.weight, uncached.head.weight, atol=1e-5)
    assert (predict(cached, clips, 24000, cache) == predict(uncached, clips, 24000)).all()


def test_the_cache_is_bypassed_once_the_encoder_has_trained(backbone, clips):
    cache = FeatureCache(backbone.cache_key())
    model = fresh(backbone)
    fit(model, clips, TrainParams(lr=1e-3, epochs=2, unfreeze=1, maxlen=16000, batch_size=4), seed=0, cache=cache)
    misses, hits = cache.misses, cache.hits
    predict(model, clips, 16000, cache)
    assert (cache.misses, cache.hits) == (misses, hits)


def test_layer_mix_standardises_the_mix_exactly_for_any_weights():
    from serbench.backbones.model import LayerMix

    torch.manual_seed(0)
    features = torch.randn(200, 4, 6) * torch.tensor([1.0, 3.0, 0.5, 2.0])[None, :, None] + 5
    mix = LayerMix(4, 6)
    mix.set_statistics(features)
    with torch.no_grad():
        mix.logits.copy_(torch.tensor([0.3, -1.0, 2.0, 0.0]))
        out = mix(features)
    assert torch.allclose(out.mean(dim=0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(out.std(dim=0, unbiased=False), torch.ones(6), atol=1e-4)


def test_cached_prefix_and_uncached_partial_fine_tuning_give_the_same_model(clips):
    """With ``train_layers`` the frozen prefix's outputs come from the cache in unfrozen
    epochs; the top layer and the head end up as without any cache."""
    partial = WhisperBackbone("openai/whisper-tiny.en", WhisperBackbone.Options(train_layers=1))
    params = TrainParams(lr=1e-4, epochs=3, unfreeze=1, maxlen=24000, batch_size=2)
    cache = FeatureCache(partial.cache_key())
    cached, uncached = fresh(partial), fresh(partial)
    before = encoder_state(cached)
    fit(cached, clips, params, seed=0, cache=cache)
    fit(uncached, clips, params, seed=0, cache=None)
    after = encoder_state(cached)
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("layers.3.", "layer_norm.")) for k in changed)
    assert cache.misses == 2 * len(clips)  # each clip once pooled, once as a prefix state
    misses = cache.misses
    assert (predict(cached, clips, 24000, cache) == predict(uncached, clips, 24000)).all()
    assert cache.misses == misses  # predictions reuse the prefix states
    # Adam divides by the gradient's running size, so last-bit differences between the
    # cached and recomputed prefix (batched differently) move near-zero-gradient weights by
    # up to ~lr; what must agree is each tensor's update as a whole.
    for key, value in encoder_state(uncached).items():
        update, other = after[key] - before[key], value - before[key]
        assert (update - other).norm() <= 1e-2 * update.norm() + 1e-7, key
    assert torch.allclose(cached.head.weight, uncached.head.weight, atol=1e-5)


def test_group_by_length_batches_every_clip_once_with_less_padding(clips):
    from serbench.training.fit import epoch_batches

    many = [clip for _ in range(6) for clip in clips]  # enough for several length groups
    padded = {}
    for grouped in (False, True):
        params = TrainParams(batch_size=4, maxlen=160000, group_by_length=grouped)
        epoch = epoch_batches(many, params, torch.Generator().manual_seed(0))
        assert sorted(i for batch in epoch for i in batch) == list(range(len(many)))
        assert [len(batch) for batch in epoch] == [4] * (len(many) // 4)
        assert epoch == epoch_batches(many, params, torch.Generator().manual_seed(0))
        padded[grouped] = sum(max(len(many[i].wave) for i in batch) * len(batch) for batch in epoch)
    assert padded[True] < padded[False]
    one = TrainParams(batch_size=1, group_by_length=True)
    assert epoch_batches(many, one, torch.Generator().manual_seed(0)) == epoch_batches(
        many, TrainParams(batch_size=1), torch.Generator().manual_seed(0)
    )
