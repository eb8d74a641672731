"""Test-time adaptation of a transfer target (``transfer[].adapt``), on real audio and
weights: a tiny EmoDB study (frozen Whisper tiny.en) scored on ravdess-mini (32 RAVDESS
files, actors 08 and 13) zero-shot, corpus-adapted and speaker-adapted; and the
adaptation function itself on real encoded features."""

from __future__ import annotations

import copy
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from serbench.spec import parse_job
from serbench.study.events import StudyEvents
from serbench.study.study import Study
from serbench.study.trial import Training
from serbench.training.adapt import adapted_logits, groups_for, result_key
from serbench.training.grouping import group_statistics
from serbench.training.features import encode_batched

MAXLEN = 24000
EMODB_CLASSES = ["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"]
KEYS = ["ravdess", "ravdess+adapt:corpus", "ravdess+adapt:speaker"]


JOB = {
    "name": "transfer_adapt",
    "seed": 0,
    "dataset": {
        "name": "emodb",
        "protocol": {"name": "holdout", "test_fraction": 0.2, "val_fraction": 0.25},
        "subset": {"per_class": 5},
    },
    "backbone": {"name": "whisper", "source": "openai/whisper-tiny.en", "options": {"layers": "mean"}},
    "training": {"batch_size": 4, "unfreeze": 10},  # a frozen encoder
    "search_space": {
        "lr": {"type": "float", "low": 1e-3, "high": 3e-3, "log": True},
        "epochs": {"type": "int", "low": 2, "high": 3},
    },
    "engine": {"name": "random"},
    "budget": {"trials": 1},
    "resources": {"cpus": 2, "memory_gb": 4},
}


def _job(adapt):
    job = copy.deepcopy(JOB)
    job["search_space"]["maxlen"] = {"type": "choice", "values": [MAXLEN]}
    target = {"name": "ravdess", "root": "ravdess-mini"}
    if adapt is not None:
        target["adapt"] = adapt
    job["transfer"] = [target]
    return job


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    out = tmp_path_factory.mktemp("adapt")
    adapted = Study(parse_job(_job(["none", "corpus", "speaker"])), out / "adapted").run()
    plain = Study(parse_job(_job(None)), out / "plain").run()
    return adapted, plain, out / "adapted"


def test_each_mode_is_its_own_full_result_with_equal_n(studies):
    adapted, _, _ = studies
    assert sorted(adapted.transfer) == KEYS
    results = [adapted.transfer[k] for k in KEYS]
    assert [r.adapt for r in results] == ["none", "corpus", "speaker"]
    assert [r.uses_target_audio for r in results] == [False, True, True]
    assert {r.target for r in results} == {"ravdess"}
    assert {r.n for r in results} == {28}
    for r in results:
        assert sum(map(sum, r.confusion_matrix)) == r.n
        assert r.dropped == {"surprised": 4}
    print({k: round(adapted.transfer[k].bca, 4) for k in KEYS})


def test_none_equals_the_zero_shot_scores_of_a_job_without_adapt(studies):
    adapted, plain, _ = studies
    assert list(plain.transfer) == ["ravdess"] and plain.transfer["ravdess"].adapt == "none"
    assert adapted.transfer["ravdess"] == plain.transfer["ravdess"]


def test_the_saved_models_json_lists_every_mode(studies):
    import json

    adapted, _, out = studies
    found = sorted(out.glob("**/model.json"))
    assert found, "no model.json written by the study"
    scores = json.loads(found[0].read_text())["scores"]["transfer"]
    assert sorted(scores) == KEYS
    assert scores["ravdess+adapt:speaker"]["bca"] == pytest.approx(adapted.transfer["ravdess+adapt:speaker"].bca)


# --- the function, on real features ----------------------------------------------------


@pytest.fixture(scope="module")
def real(tiny_whisper, emodb_corpus, ravdess_corpus):
    """A whisper-tiny model whose norm is fitted on EmoDB features, and ravdess-mini's
    features under it."""
    from serbench.backbones.whisper import WhisperBackbone, WhisperOptions

    torch.manual_seed(0)
    model = WhisperBackbone(str(tiny_whisper), WhisperOptions(layers="mean")).build(7).eval()
    source = torch.stack(encode_batched(model, list(emodb_corpus.clips.values()), MAXLEN))
    model.norm.set_statistics(source)
    clips = list(ravdess_corpus.clips.values())
    features = torch.stack(encode_batched(model, clips, MAXLEN))
    speaker = {u.id: u.speaker for u in ravdess_corpus.utterances}
    return model, features, [speaker[c.id] for c in clips]


@pytest.fixture(scope="module")
def emodb_corpus(emodb_root):
    from serbench.data.adapters.emodb import EmoDB
    from serbench.data.corpus import load_corpus
    from serbench.spec import SubsetSpec

    corpus = load_corpus(EmoDB(), emodb_root, None, SubsetSpec(per_class=2), 0, False)
    corpus.set_class_indices(EMODB_CLASSES)
    return corpus


@pytest.fixture(scope="module")
def ravdess_corpus(ravdess_mini_root):
    from serbench.data.adapters.ravdess import RAVDESS
    from serbench.data.corpus import load_corpus

    corpus = load_corpus(RAVDESS(), ravdess_mini_root, None, None, 0, False)
    corpus.set_class_indices(EMODB_CLASSES)
    return corpus


def _standardised(norm, features, statistics=None):
    with torch.no_grad():
        return norm(features, statistics)


def test_corpus_adaptation_standardises_the_target_features(real):
    model, features, speakers = real
    (stats,) = group_statistics(model, features, groups_for("corpus", speakers)).values()
    z = _standardised(model.norm, features, stats)
    assert z.mean(dim=0).abs().max() < 1e-4
    assert (z.std(dim=0, unbiased=False) - 1).abs().max() < 1e-3
    # the source statistics did not: the target is off-centre under them
    assert _standardised(model.norm, features).mean(dim=0).abs().max() > 0.1


def test_speaker_adaptation_standardises_each_speaker(real):
    model, features, speakers = real
    assert sorted(set(speakers)) == ["08", "13"]
    per_speaker = group_statistics(model, features, groups_for("speaker", speakers))
    for who, stats in per_speaker.items():
        rows = [i for i, s in enumerate(speakers) if s == who]
        z = _standardised(model.norm, features[rows], stats)
        assert z.mean(dim=0).abs().max() < 1e-4
        assert (z.std(dim=0, unbiased=False) - 1).abs().max() < 1e-3
    logits = adapted_logits(model, features, groups_for("speaker", speakers))
    for who, stats in per_speaker.items():
        rows = [i for i, s in enumerate(speakers) if s == who]
        assert torch.allclose(logits[rows], model.head(_standardised(model.norm, features[rows], stats)), atol=1e-6)


def test_none_is_the_models_own_classification(real):
    model, features, _ = real
    assert torch.equal(adapted_logits(model, features, None), model.classify(features))


def test_adaptation_leaves_the_trained_model_unchanged(real):
    model, features, speakers = real
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for mode in ("corpus", "speaker"):
        adapted_logits(model, features, groups_for(mode, speakers))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_layer_mix_statistics_are_refitted_too(tiny_whisper, ravdess_corpus):
    from serbench.backbones.whisper import WhisperBackbone, WhisperOptions

    torch.manual_seed(0)
    model = WhisperBackbone(str(tiny_whisper), WhisperOptions(layers="weighted")).build(7).eval()
    clips = list(ravdess_corpus.clips.values())
    features = torch.stack(encode_batched(model, clips, MAXLEN))
    with torch.no_grad():
        model.norm.logits.copy_(torch.linspace(-1, 1, len(model.norm.logits)))  # a learned, uneven mix
    before = {k: v.clone() for k, v in model.norm.state_dict().items()}
    (stats,) = group_statistics(model, features, ["corpus"] * len(clips)).values()
    z = _standardised(model.norm, features, stats)
    assert z.mean(dim=0).abs().max() < 1e-3
    assert (z.std(dim=0, unbiased=False) - 1).abs().max() < 1e-2
    assert all(torch.equal(before[k], v) for k, v in model.norm.state_dict().items())  # nothing refitted in place


@pytest.mark.parametrize("mode", ["corpus", "speaker"])
def test_adaptation_never_reads_the_target_labels(real, ravdess_corpus, mode):
    """The trial's scoring path, on the corpus and on a copy whose labels are shuffled
    (speakers kept): every clip's logits are the same."""
    model, features, _ = real
    shuffled = copy.deepcopy(ravdess_corpus)
    labels = [c.label for c in shuffled.clips.values()]
    random.Random(0).shuffle(labels)
    assert labels != [c.label for c in ravdess_corpus.clips.values()]
    for clip, label in zip(shuffled.clips.values(), labels):
        clip.label = label
    inputs = SimpleNamespace(data=SimpleNamespace(classes=EMODB_CLASSES))
    training = Training(parse_job(_job(None)), inputs, StudyEvents())
    original = training._adapted_logits(model, ravdess_corpus, features, mode, speaker_norm=False)
    again = training._adapted_logits(model, shuffled, features, mode, speaker_norm=False)
    assert np.array_equal(original.numpy(), again.numpy())


def test_result_keys():
    assert [result_key("ravdess", m) for m in ("none", "corpus", "speaker")] == KEYS
