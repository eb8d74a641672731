"""The accuracy levers beyond the paper, on real EmoDB audio and real Whisper tiny.en
weights: augmentation copies, per-speaker standardisation, mean+std pooling, dropout and
label smoothing -- each changes what it says and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serbench.backbones.whisper import WhisperBackbone
from serbench.data.adapters.emodb import EmoDB
from serbench.data.audio import load_audio
from serbench.data.base import Clip
from serbench.data.folds import take_subset
from serbench.spec import SubsetSpec, TrainParams
from serbench.training.augment import SNRS_DB, SPEEDS, augmented
from serbench.training.features import FeatureCache, encode_batched
from serbench.training.fit import fit, logits_of
from serbench.training.grouping import group_statistics

MAXLEN = 24000


@pytest.fixture(scope="module")
def utterances(emodb_root):
    return take_subset(EmoDB().scan(emodb_root).utterances, SubsetSpec(per_class=3), seed=0)


@pytest.fixture(scope="module")
def clips(utterances):
    return [Clip(u.id, load_audio(u.path), EmoDB.classes.index(u.label)) for u in utterances]


@pytest.fixture(scope="module")
def speakers(utterances):
    return [u.speaker for u in utterances]


def build(options=None, seed=0):
    torch.manual_seed(seed)
    return WhisperBackbone("openai/whisper-tiny.en", options).build(7)


# --- augmentation -----------------------------------------------------------------------


def test_speed_copies_change_the_length_by_the_factor_and_keep_the_label(clips):
    copies = augmented(clips[:4], "speed")
    assert len(copies) == 2 * 4
    for index, copy in enumerate(copies):
        clip, factor = clips[index // 2], SPEEDS[index % 2]
        assert copy.label == clip.label and copy.id.startswith(clip.id + "#speed")
        assert abs(len(copy.wave) - len(clip.wave) / factor) <= 2
    assert augmented(clips[:4], "none") == []


def test_noise_copies_have_the_stated_snr_and_are_the_same_every_time(clips):
    copies = augmented(clips[:3], "noise")
    again = augmented(clips[:3], "noise")
    for index, copy in enumerate(copies):
        clip, snr = clips[index // 2], SNRS_DB[index % 2]
        noise = copy.wave.astype(np.float64) - clip.wave
        measured = 10 * np.log10(np.mean(clip.wave.astype(np.float64) ** 2) / np.mean(noise**2))
        assert abs(measured - snr) < 0.2
        assert np.array_equal(copy.wave, again[index].wave)
    assert not np.array_equal(copies[0].wave[:100], augmented(clips[1:2], "noise")[0].wave[:100])


def test_an_augmented_epoch_visits_every_copy_and_the_statistics_stay_the_originals(clips):
    params = TrainParams(lr=1e-3, epochs=1, unfreeze=5, maxlen=MAXLEN, batch_size=4, augment="speed")
    cache = FeatureCache("augment-test")
    model = build()
    fit(model, clips, params, seed=0, cache=cache)
    assert cache.misses == 3 * len(clips)  # originals and both copies, each encoded once
    plain = build()
    fit(plain, clips, params.model_copy(update={"augment": "none"}), seed=0)
    assert torch.allclose(model.norm.mean, plain.norm.mean) and torch.allclose(model.norm.std, plain.norm.std)
    assert not torch.allclose(model.head.weight, plain.head.weight)


# --- per-speaker standardisation -------------------------------------------------------


def test_speaker_norm_needs_the_speakers(clips):
    params = TrainParams(epochs=1, unfreeze=5, maxlen=MAXLEN, speaker_norm=True)
    with pytest.raises(ValueError, match="speaker"):
        fit(build(), clips, params, seed=0)


def test_speaker_norm_scores_each_speaker_with_its_own_statistics(clips, speakers):
    params = TrainParams(lr=3e-3, epochs=3, unfreeze=5, maxlen=MAXLEN, batch_size=4, speaker_norm=True)
    model = build()
    fit(model, clips, params, seed=0, speakers=speakers)
    features = torch.stack(encode_batched(model, clips, MAXLEN))
    per_speaker = group_statistics(model, features, speakers)
    expected = torch.empty(len(clips), 7)
    with torch.no_grad():
        for who, stats in per_speaker.items():
            rows = [i for i, s in enumerate(speakers) if s == who]
            z = model.norm(features[rows], stats)
            assert (z.mean(dim=0) * stats["std"]).abs().max() < 1e-5  # each speaker centred on itself
            expected[rows] = model.head(z)
    logits = logits_of(model, clips, MAXLEN, speakers=speakers)
    assert np.allclose(logits, expected.numpy(), atol=1e-5)
    # without the speakers it is the training set's statistics: other logits
    assert not np.allclose(logits_of(model, clips, MAXLEN), logits, atol=1e-3)


def test_speaker_norm_statistics_follow_a_training_encoder(clips, speakers):
    """Partially fine-tuned: after the encoder has changed, the per-speaker statistics are
    refitted to what it encodes, so the trained head sees centred features at scoring."""
    options = WhisperBackbone.Options(train_layers=1)
    params = TrainParams(lr=1e-4, epochs=2, unfreeze=0, maxlen=MAXLEN, batch_size=4, speaker_norm=True)
    model = build(options)
    fit(model, clips, params, seed=0, cache=FeatureCache("speaker-norm-train"), speakers=speakers)
    assert not model.encoder_pristine
    features = torch.stack(encode_batched(model, clips, MAXLEN))
    for who, stats in group_statistics(model, features, speakers).items():
        rows = [i for i, s in enumerate(speakers) if s == who]
        with torch.no_grad():
            centred = model.norm(features[rows], stats).mean(dim=0)
        # on the features' scale: a feature almost constant within a speaker divides float
        # rounding of its mean by a tiny sd
        assert (centred * stats["std"]).abs().max() < 1e-5


def test_speaker_enrolment_scores_a_trained_speaker_with_its_training_statistics(clips, speakers):
    params = TrainParams(lr=3e-3, epochs=2, unfreeze=5, maxlen=MAXLEN, batch_size=4, speaker_norm=True)
    plain = build()
    fit(plain, clips, params, seed=0, speakers=speakers)
    assert plain.enrolment == {}  # kept only with speaker_enrolment
    model = build()
    fit(model, clips, params.model_copy(update={"speaker_enrolment": True}), seed=0, speakers=speakers)
    features = torch.stack(encode_batched(model, clips, MAXLEN))
    trained = group_statistics(model, features, speakers)
    assert set(model.enrolment) == set(speakers)
    for who, stats in trained.items():
        assert all(torch.allclose(model.enrolment[who][k], stats[k], atol=1e-5) for k in stats)
    # three clips of one trained speaker and two of a speaker it never trained on
    who = max(set(speakers), key=speakers.count)
    mine = [i for i, s in enumerate(speakers) if s == who][:3]
    assert len(mine) == 3
    others = [i for i, s in enumerate(speakers) if s != who][:2]
    scored = [clips[i] for i in mine + others]
    names = [who] * 3 + ["unseen"] * 2
    logits = logits_of(model, scored, MAXLEN, speakers=names, enrolled=model.enrolment)
    with torch.no_grad():
        enrolled = model.classify(features[mine], model.enrolment[who])
        own = model.classify(features[others], group_statistics(model, features[others], ["unseen"] * 2)["unseen"])
    assert np.allclose(logits[:3], enrolled.numpy(), atol=1e-5)
    assert np.allclose(logits[3:], own.numpy(), atol=1e-5)
    # without the enrolment the three clips are standardised with their own statistics: other logits
    assert not np.allclose(logits_of(model, scored, MAXLEN, speakers=names)[:3], logits[:3], atol=1e-3)


def test_known_statistics_are_kept_and_their_rows_never_read():
    model = build()
    features = torch.randn(5, model.head.in_features)
    features[:3] = float("nan")  # "a"'s rows: reading them would spread NaN into its statistics
    known = {"a": {"mean": torch.zeros(model.head.in_features), "std": torch.ones(model.head.in_features)}}
    statistics = group_statistics(model, features, ["a", "a", "a", "b", "b"], known)
    assert list(statistics) == ["a", "b"] and statistics["a"] is known["a"]
    assert all(torch.isfinite(value).all() for value in statistics["b"].values())
    assert torch.allclose(statistics["b"]["mean"], features[3:].mean(dim=0))


def test_speaker_enrolment_is_refitted_to_an_encoder_that_trained(clips, speakers):
    options = WhisperBackbone.Options(train_layers=1)
    params = TrainParams(
        lr=1e-4, epochs=2, unfreeze=0, maxlen=MAXLEN, batch_size=4, speaker_norm=True, speaker_enrolment=True
    )
    model = build(options)
    fit(model, clips, params, seed=0, cache=FeatureCache("speaker-enrolment-train"), speakers=speakers)
    assert not model.encoder_pristine
    features = torch.stack(encode_batched(model, clips, MAXLEN))
    for who, stats in group_statistics(model, features, speakers).items():
        assert torch.allclose(model.enrolment[who]["mean"], stats["mean"], atol=1e-4)


# --- pooling ----------------------------------------------------------------------------


def test_mean_std_pooling_doubles_the_features_and_keeps_the_mean(clips):
    mean_model = build()
    both = build(WhisperBackbone.Options(pooling="mean+std"))
    assert both.feature_dim == 2 * mean_model.feature_dim
    waves = [c.wave[:MAXLEN] for c in clips[:3]]
    with torch.no_grad():
        mean_only, paired = mean_model.encode(waves, MAXLEN), both.encode(waves, MAXLEN)
    dim = mean_model.feature_dim
    assert torch.allclose(paired[:, :dim], mean_only, atol=1e-5)
    assert (paired[:, dim:] > 0).all()  # a spread over frames
    # one clip alone gets the same features as in the batch (padding masked out of the spread)
    with torch.no_grad():
        assert torch.allclose(both.encode(waves[:1], MAXLEN)[0], paired[0], atol=1e-4)


def test_mean_std_pooling_through_the_cached_prefix_equals_direct_encoding(clips):
    model = build(WhisperBackbone.Options(pooling="mean+std", train_layers=1, layers="weighted")).eval()
    waves = [c.wave[:MAXLEN] for c in clips[:3]]
    with torch.no_grad():
        direct = model.encode(waves, MAXLEN)
        cached = model.encode_from_prefix(model.encode_prefix(waves, MAXLEN), [len(w) for w in waves])
    assert direct.shape == (3, len(model.encoder.layers) + 1, 2 * 384)
    assert torch.allclose(direct, cached, atol=1e-5)


# --- dropout and label smoothing --------------------------------------------------------


def test_dropout_acts_in_training_only(clips):
    model = build()
    fit(model, clips, TrainParams(lr=1e-3, epochs=1, unfreeze=5, maxlen=MAXLEN, dropout=0.5), seed=0)
    assert model.dropout.p == 0.5
    features = torch.stack(encode_batched(model, clips[:4], MAXLEN))
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.classify(features), model.classify(features))
        model.train()
        assert not torch.equal(model.classify(features), model.classify(features))


def test_label_smoothing_keeps_the_model_less_certain(clips):
    params = TrainParams(lr=3e-3, epochs=8, unfreeze=20, maxlen=MAXLEN, batch_size=4)
    sharp, smooth = build(), build()
    fit(sharp, clips, params, seed=0)
    fit(smooth, clips, params.model_copy(update={"label_smoothing": 0.5}), seed=0)
    top = [torch.softmax(torch.from_numpy(logits_of(m, clips, MAXLEN)), 1).max(1).values.mean() for m in (sharp, smooth)]
    assert top[1] < top[0]


# --- specs written before the levers ----------------------------------------------------


def test_the_levers_at_their_defaults_leave_fingerprints_and_seed_groups_unchanged(job_dict):
    from serbench.spec import parse_job
    from serbench.spec.job import LATER_TRAINING_DEFAULTS

    plain = parse_job(job_dict)
    training = plain.fingerprint_data()["training"]
    assert not set(LATER_TRAINING_DEFAULTS) & set(training)  # as a journal from before them
    assert set(LATER_TRAINING_DEFAULTS) <= set(plain.model_dump()["training"])
    levers = {"speaker_norm": True, "dropout": 0.2, "label_smoothing": 0.1, "augment": "noise", "speaker_enrolment": True}
    for key, value in levers.items():
        changed = parse_job({**job_dict, "training": {**job_dict["training"], key: value}})
        assert changed.fingerprint_data()["training"][key] == value
