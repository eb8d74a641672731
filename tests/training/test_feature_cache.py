"""The frozen-feature cache: it changes the cost and nothing else, whatever holds the
features (memory, a spill folder, a persistent folder), and never serves features of
another backbone configuration."""

import numpy as np
import pytest
import torch

from serbench.data.base import Clip

from serbench.data.audio import load_audio
from serbench.errors import UserError
from serbench.training.features import FeatureCache, FeatureStore, memory_bound_mb, study_cache
from serbench.data.folds import take_subset
from serbench.spec import SubsetSpec, TrainParams
from serbench.training.fit import fit, predict
from serbench.backbones.whisper import WhisperBackbone, WhisperOptions
from serbench.data.adapters.emodb import EmoDB

FROZEN = TrainParams(lr=1e-3, epochs=3, unfreeze=3, maxlen=24000, batch_size=2)


@pytest.fixture(scope="module")
def clips(emodb_root):
    utterances = take_subset(EmoDB().scan(emodb_root).utterances, SubsetSpec(per_class=2), seed=0)
    return [Clip(u.id, load_audio(u.path), EmoDB.classes.index(u.label)) for u in utterances]


@pytest.fixture(scope="module")
def weighted():
    return WhisperBackbone("openai/whisper-tiny.en", WhisperOptions(layers="weighted"))


def fresh(backbone, seed=0):
    torch.manual_seed(seed)
    return backbone.build(7)


def head_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("encoder.")}


def assert_same_head(a, b):
    sa, sb = head_state(a), head_state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.allclose(sa[key], sb[key], atol=1e-5), key


def test_weighted_layers_cached_and_uncached_give_the_same_head(weighted, clips):
    cache = FeatureCache(weighted.cache_key())
    cached, uncached = fresh(weighted), fresh(weighted)
    fit(cached, clips, FROZEN, seed=0, cache=cache)
    fit(uncached, clips, FROZEN, seed=0, cache=None)
    assert cache.misses == len(clips) and cache.hits > 0
    assert not torch.equal(cached.norm.logits, torch.zeros(5))  # the layer weights trained
    assert_same_head(cached, uncached)
    assert (predict(cached, clips, FROZEN.maxlen, cache) == predict(uncached, clips, FROZEN.maxlen)).all()


def test_spilled_to_disk_the_cache_gives_the_same_head(weighted, clips, tmp_path):
    cache = FeatureCache(weighted.cache_key(), max_memory_mb=0, folder=tmp_path)
    cached, uncached = fresh(weighted), fresh(weighted)
    fit(cached, clips, FROZEN, seed=0, cache=cache)
    fit(uncached, clips, FROZEN, seed=0, cache=None)
    assert cache.store.memory_bytes == 0
    assert cache.store.disk_writes == len(clips) and cache.store.disk_reads > 0
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == len(clips)
    assert not list(tmp_path.rglob("*.tmp"))
    assert_same_head(cached, uncached)


def test_memory_holds_entries_up_to_the_bound_then_spills(tmp_path):
    store = FeatureStore("p", max_memory_mb=1, folder=tmp_path)
    block = torch.ones(2**20 // 4 // 2)  # 0.5 MB
    for key in "abc":
        store.put(key + "0", block * ord(key))
    assert store.memory_bytes == 2**20 and store.disk_writes == 1
    assert torch.equal(store.get("c0"), block * ord("c"))  # read back from the folder
    assert len(store) == 3


def test_sibling_caches_share_one_memory_bound_and_spill_apart(tmp_path):
    first = FeatureCache("producer a", max_memory_mb=1, folder=tmp_path)
    second = first.sibling("producer b")
    block = torch.ones(2**20 // 4 // 2)  # 0.5 MB
    first.store.put("a0", block)
    second.store.put("b0", block * 2)
    second.store.put("b1", block * 3)  # the shared megabyte is full: spilled
    assert first.store.memory_bytes == second.store.memory_bytes == 2**19
    assert first.store.budget.used == 2**20 and second.store.disk_writes == 1
    assert second.store.folder != first.store.folder and second.store.folder.parent == tmp_path
    assert torch.equal(second.store.get("b1"), block * 3) and first.store.get("b1") is None


def test_without_a_folder_nothing_spills():
    store = FeatureStore("p", max_memory_mb=0)
    store.put("k", torch.ones(3))
    assert torch.equal(store.get("k"), torch.ones(3)) and store.disk_writes == 0


def test_a_persistent_folder_serves_a_later_run(weighted, clips, tmp_path):
    first = FeatureCache(weighted.cache_key(), folder=tmp_path, persistent=True)
    model = fresh(weighted)
    expected = first.features(model, clips, 24000)
    second = FeatureCache(weighted.cache_key(), folder=tmp_path, persistent=True)
    again = second.features(model, clips, 24000)
    assert second.misses == 0 and second.store.disk_reads == len(clips)
    assert torch.equal(expected, again)


def test_an_unreadable_entry_is_recomputed(weighted, clips, tmp_path):
    first = FeatureCache(weighted.cache_key(), folder=tmp_path, persistent=True)
    model = fresh(weighted)
    expected = first.features(model, clips[:2], 24000)
    for path in tmp_path.rglob("*.npy"):
        path.write_bytes(b"not an array")
    second = FeatureCache(weighted.cache_key(), folder=tmp_path, persistent=True)
    assert torch.allclose(second.features(model, clips[:2], 24000), expected, atol=1e-5)
    assert second.misses == 2


@pytest.mark.parametrize(
    "other",
    [
        {"source": "openai/whisper-tiny.en", "options": {"layers": "mean"}},
        {"source": "openai/whisper-tiny.en", "options": {"layers": "weighted", "pad": "30s"}},
        {"source": "openai/whisper-base", "options": {"layers": "weighted"}},
    ],
    ids=["layers", "pad", "source"],
)
def test_a_changed_option_never_reuses_features(weighted, clips, tmp_path, other):
    FeatureCache(weighted.cache_key(), folder=tmp_path, persistent=True).features(fresh(weighted), clips[:3], 24000)
    changed = WhisperBackbone(other["source"], WhisperOptions(**other["options"]))
    assert changed.cache_key() != weighted.cache_key()
    cache = FeatureCache(changed.cache_key(), folder=tmp_path, persistent=True)
    model = fresh(changed)
    features = cache.features(model, clips[:3], 24000)
    assert cache.misses == 3 and cache.store.disk_reads == 0
    with torch.no_grad():
        direct = torch.stack([model.eval().encode([c.wave[:24000]], 24000)[0] for c in clips[:3]])
    assert torch.allclose(features, direct, atol=1e-5)


def test_maxlen_shares_features_of_clips_shorter_than_both_cuts_unless_padding_to_it(clips):
    short = [c for c in clips if len(c.wave) <= 32000][:2]
    assert short, "EmoDB has clips of 2 s or less"
    for pad, shared in (("none", True), ("30s", True), ("maxlen", False)):
        backbone = WhisperBackbone("openai/whisper-tiny.en", WhisperOptions(pad=pad))
        cache = FeatureCache(backbone.cache_key())
        model = fresh(backbone)
        cache.features(model, short, 32000)
        cache.features(model, short, 48000)
        assert cache.misses == (len(short) if shared else 2 * len(short)), pad


def test_a_clip_id_with_new_audio_is_not_served_old_features(weighted, clips):
    cache = FeatureCache(weighted.cache_key())
    model = fresh(weighted)
    cache.features(model, clips[:1], 24000)
    changed = Clip(clips[0].id, clips[0].wave * np.float32(0.5), clips[0].label)
    cache.features(model, [changed], 24000)
    assert cache.misses == 2


def test_study_cache_reads_its_folder_and_bound_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SERBENCH_CACHE", raising=False)
    monkeypatch.delenv("SERBENCH_CACHE_MB", raising=False)
    cache = study_cache("p", tmp_path / "out", memory_gb=4)
    assert cache.store.folder.parent == tmp_path / "out" / ".feature-cache"
    assert not cache.store.persistent and cache.store.max_bytes == 1024 * 2**20
    monkeypatch.setenv("SERBENCH_CACHE", str(tmp_path / "shared"))
    monkeypatch.setenv("SERBENCH_CACHE_MB", "64")
    cache = study_cache("p", tmp_path / "out", memory_gb=4)
    assert cache.store.folder.parent == tmp_path / "shared" and cache.store.persistent
    assert cache.store.max_bytes == 64 * 2**20
    monkeypatch.setenv("SERBENCH_CACHE_MB", "lots")
    with pytest.raises(UserError, match="SERBENCH_CACHE_MB"):
        memory_bound_mb(4)
