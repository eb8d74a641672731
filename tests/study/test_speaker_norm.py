"""``speaker_norm`` through a whole study, on real EmoDB and ravdess-mini audio with real
Whisper tiny.en weights: speaker-independent folds, each test speaker standardised with
its own statistics, and the result, the transfer rows and the saved model saying so."""

from __future__ import annotations

import copy

import pytest

from conftest import assert_one_line_error
from serbench.errors import ModelError, UserError
from serbench.spec import parse_job
from serbench.study.study import Study

JOB = {
    "name": "speaker_norm",
    "seed": 0,
    "dataset": {
        "name": "emodb",
        "protocol": {"name": "speaker-holdout", "test_speakers": ["03", "08"], "val_fraction": 0.25},
        "subset": {"per_class": 6},
    },
    "backbone": {"name": "whisper", "source": "openai/whisper-tiny.en", "options": {"layers": "mean"}},
    "training": {"batch_size": 4, "unfreeze": 10, "maxlen": 24000, "lr": 3e-3, "epochs": 4},
    "search_space": {"speaker_norm": {"type": "choice", "values": [True]}},
    "engine": {"name": "random"},
    "budget": {"trials": 1},
    "resources": {"cpus": 2, "memory_gb": 4},
    "transfer": [{"name": "ravdess", "root": "ravdess-mini", "adapt": ["none", "corpus"]}],
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("speaker-norm")
    result = Study(parse_job(copy.deepcopy(JOB)), out).run()
    return result, out


def test_the_test_scores_are_marked_transductive(study):
    result, _ = study
    (fold,) = result.folds
    assert fold.best.params["speaker_norm"] is True
    assert fold.test.transductive is True
    assert {"03", "08"} == set(fold.test_speakers)


def test_every_transfer_row_of_a_speaker_normalised_model_reads_the_target_audio(study):
    result, _ = study
    assert result.transfer["ravdess"].uses_target_audio is True  # its own rule, even zero-shot
    assert result.transfer["ravdess+adapt:corpus"].uses_target_audio is True


def test_the_saved_model_standardises_one_speakers_recordings_together(study, emodb_root):
    from serbench.deploy import load_model
    from serbench.deploy.onnx_export import export_onnx

    _, out = study
    model = load_model(out)
    files = sorted((emodb_root / "wav").glob("03*.wav"))[:6]
    alone = model.predict_files(files[:3])
    together = model.predict_files(files)
    assert all(p.error is None for p in together)
    # the statistics are those of the recordings given together: three alone score otherwise
    assert [p.probabilities for p in together[:3]] != [p.probabilities for p in alone]
    assert [p.probabilities for p in model.predict_files(files[:3])] == [p.probabilities for p in alone]
    with pytest.raises(UserError, match="at least two recordings"):
        model.predict_files(files[:1], cut=True)

    export_onnx(out)  # features, statistics and head graphs: the same rule in onnxruntime
    onnx = load_model(out, runtime="onnx")
    assert onnx.info.training.params["speaker_norm"] is True and onnx.scorer.speaker_norm
    for torch_prediction, onnx_prediction in zip(together, onnx.predict_files(files)):
        assert list(onnx_prediction.probabilities.values()) == pytest.approx(list(torch_prediction.probabilities.values()), abs=1e-4)
    assert [p.label for p in onnx.predict_files(files[:3])] == [p.label for p in alone]
    with pytest.raises(UserError, match="at least two recordings"):
        onnx.predict_files(files[:1], cut=True)
    head = onnx.folder / "model.head.onnx"
    head.write_bytes(head.read_bytes() + b"\0")  # each graph of the three is checked
    with pytest.raises(ModelError, match=r"model\.head\.onnx: its sha256 differs"):
        load_model(out, runtime="onnx")


ENROLLED_JOB = {
    **{k: v for k, v in JOB.items() if k != "transfer"},
    "name": "speaker_enrolment",
    # a learned layer mix: its per-layer statistics are what each speaker's standardisation
    # carries (the saved model and its ONNX graphs)
    "backbone": {"name": "whisper", "source": "openai/whisper-tiny.en", "options": {"layers": "weighted"}},
    "dataset": {
        "name": "emodb",
        "protocol": {"name": "holdout", "test_fraction": 0.25, "val_fraction": 0.25},
        "subset": {"per_class": 15},  # every speaker in the final model's training utterances
    },
    "search_space": {"speaker_norm": {"type": "choice", "values": [True]}, "speaker_enrolment": {"type": "choice", "values": [True]}},
}


@pytest.fixture(scope="module")
def holdout(tmp_path_factory):
    """The holdout study with ``speaker_enrolment``, and its twin without."""
    out = tmp_path_factory.mktemp("speaker-enrolment")
    enrolled = Study(parse_job(copy.deepcopy(ENROLLED_JOB)), out / "enrolled").run()
    own_job = copy.deepcopy(ENROLLED_JOB)
    own_job["search_space"]["speaker_enrolment"]["values"] = [False]
    own = Study(parse_job(own_job), out / "own").run()
    return enrolled, own, out


def test_a_holdout_scored_on_enrolled_speakers_reads_no_test_audio(holdout):
    """On the holdout protocol every test speaker also trains: with ``speaker_enrolment``
    each is standardised with its training utterances' statistics, so the test score is not
    transductive -- and it is another score than with the test utterances' own statistics."""
    enrolled, own, _ = holdout
    (fold,), (own_fold,) = enrolled.folds, own.folds
    assert fold.best.params["speaker_enrolment"] is True
    assert fold.test.transductive is False
    assert own_fold.test.transductive is True
    assert [u.id for u in fold.test.predictions] == [u.id for u in own_fold.test.predictions]  # the same split
    assert [p.probabilities for p in fold.test.predictions] != [p.probabilities for p in own_fold.test.predictions]


def test_the_saved_model_scores_an_enrolled_speaker_as_its_test_split_was_scored(holdout, emodb_root, cli):
    from serbench.deploy import load_model

    enrolled, own, out = holdout
    (fold,) = enrolled.folds
    model = load_model(out / "enrolled")
    assert model.scorer.enrolled == sorted(model.info.training.train_speakers)  # every speaker it trained on
    speaker = fold.test.predictions[0].id.split("/")[-1][:2]
    mine = [p for p in fold.test.predictions if p.id.split("/")[-1][:2] == speaker]
    predicted = model.predict_files([emodb_root / p.id for p in mine], cut=True, speaker=speaker)
    for recorded, prediction in zip(mine, predicted):
        assert prediction.error is None
        assert list(prediction.probabilities.values()) == pytest.approx(recorded.probabilities, abs=1e-4)
    alone = model.predict_files([emodb_root / mine[0].id], cut=True, speaker=speaker)  # one recording is enough
    assert list(alone[0].probabilities.values()) == pytest.approx(mine[0].probabilities, abs=1e-4)
    with pytest.raises(UserError, match="not a speaker this model enrolled"):
        model.predict_files([emodb_root / mine[0].id], speaker="99")
    with pytest.raises(UserError, match=r"enrolled: none \(trained without speaker_enrolment\)"):
        load_model(out / "own").predict_files([emodb_root / mine[0].id], speaker=speaker)
    code, _, err = cli("predict", out / "enrolled", emodb_root / mine[0].id, "--speaker", "99")
    assert_one_line_error(code, err, "--speaker 99", "not a speaker this model enrolled")

    code, _, err = cli("export", out / "enrolled", "--format", "onnx")
    assert code == 0, err
    onnx = load_model(out / "enrolled", runtime="onnx")
    assert onnx.scorer.enrolled == model.scorer.enrolled
    predicted = onnx.predict_files([emodb_root / p.id for p in mine], cut=True, speaker=speaker)
    for recorded, prediction in zip(mine, predicted):
        assert list(prediction.probabilities.values()) == pytest.approx(recorded.probabilities, abs=1e-4)
    code, _, err = cli("predict", out / "enrolled", emodb_root / mine[0].id, "--speaker", "99", "--runtime", "onnx")
    assert_one_line_error(code, err, "--speaker 99", "not a speaker this model enrolled")
    assert "--speaker ID" in (out / "enrolled" / "model" / "README.md").read_text(encoding="utf-8")
