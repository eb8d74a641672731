"""Flags and counts in a result mean what they say: ``collapsed`` (one-class or chance-level
validation predictions), a fold's ``test_classes``, transfer ``dropped`` / ``n`` on one
population, and how much of a finite grid a search covered."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from serbench.results.metrics import chance_bca
from serbench.spec import parse_job
from serbench.study.events import StudyEvents
from serbench.study.inputs import load_data
from serbench.study.resolve import resolve_plugins
from serbench.study.study import Study
from serbench.study.trial import Curve, Training, speakers_of


class GivenPredictions(Training):
    """A Training whose model predicts, on the validation split, the labels it is handed
    one report after another (the thing under test is Curve's flag, not a model)."""

    def __init__(self, spec, data, answers):
        super().__init__(spec, SimpleNamespace(data=data), StudyEvents())
        self.answers = list(answers)

    def predict(self, model, clips, train_params, speakers):
        return np.asarray(self.answers.pop(0))


@pytest.fixture(scope="module")
def smoke_val():
    """A real EmoDB validation split: the test job's fold with 8 utterances per class."""
    import copy

    from conftest import SMOKE_JOB

    job = copy.deepcopy(SMOKE_JOB)
    job["dataset"]["subset"] = {"per_class": 8}
    spec = parse_job(job)
    data = load_data(spec, resolve_plugins(spec), None)
    return spec, data, data.folds[0].split.val


def predictions(truth: np.ndarray, correct: int) -> np.ndarray:
    """Every utterance of the first ``correct`` classes present predicted right, and each
    other class's utterances predicted as the next of those other classes (a cycle): every
    class is predicted, and the BCA is exactly ``correct / classes present``."""
    present = sorted(set(truth.tolist()))
    right, wrong = present[:correct], present[correct:]
    assert len(wrong) >= 2
    cycle = {c: wrong[(i + 1) % len(wrong)] for i, c in enumerate(wrong)}
    return np.array([t if t in right else cycle[t] for t in truth.tolist()])


def curve_of(spec, data, val, *answers):
    training = GivenPredictions(spec, data, answers)
    clips = [data.clips[u.id] for u in val]
    curve = Curve(training, clips, spec.train_params({"maxlen": 16000}), lambda e, b: False, speakers_of(val))
    for epoch in range(1, len(answers) + 1):
        curve.score(None, epoch)
    return curve


def test_chance_level_predictions_of_every_class_are_collapsed(smoke_val):
    spec, data, val = smoke_val
    truth = np.array([data.clips[u.id].label for u in val])
    k = len(set(truth.tolist()))
    assert k == 7 and chance_bca(truth) == pytest.approx(1 / 7)
    cases = {  # name: (predictions, their BCA, flagged)
        "below chance, every class predicted": (predictions(truth, 0), 0.0, True),
        "at chance, every class predicted": (predictions(truth, 1), 1 / k, True),
        "above chance, every class predicted": (predictions(truth, 2), 2 / k, False),
        "all one class": (np.full_like(truth, truth[0]), 1 / k, True),
        "perfect": (truth.copy(), 1.0, False),
    }
    for name, (predicted, bca, flagged) in cases.items():
        if "every class" in name:
            assert len(set(predicted.tolist())) == k, name
        fields = curve_of(spec, data, val, predicted).fields("ok", [0.0], None)
        assert fields["value"] == pytest.approx(bca), name
        assert fields["collapsed"] is flagged, name


def test_the_records_flag_is_that_of_the_report_its_value_comes_from(smoke_val):
    spec, data, val = smoke_val
    truth = np.array([data.clips[u.id].label for u in val])
    above, at_chance = predictions(truth, 2), predictions(truth, 1)
    last = curve_of(spec, data, val, above, at_chance).fields("ok", [0.0, 0.0], None)
    assert last["value"] == pytest.approx(1 / 7) and last["collapsed"] is True
    best_spec = spec.model_copy(update={"objective": "best_epoch"})
    best = curve_of(best_spec, data, val, above, at_chance).fields("ok", [0.0, 0.0], None)
    assert best["best_epoch"] == 1 and best["value"] == pytest.approx(2 / 7) and best["collapsed"] is False


def test_transfer_n_dropped_not_in_model_and_skipped_add_up_to_the_files_considered(job_dict, ravdess_mini_root, tmp_path):
    """ravdess-mini (32 files of actors 08 and 13) with one unreadable file added to Actor_08,
    scored on actor 08 only (a target subset), by a model trained on EmoDB's speaker 08, who
    has no disgust: every term of the sum is there, and each counts actor 08's files only."""
    target = tmp_path / "ravdess"
    shutil.copytree(ravdess_mini_root, target)
    broken = target / "Actor_08" / "03-01-05-01-01-02-08.wav"  # angry: a name the scheme accepts
    broken.write_bytes(b"not audio at all")
    considered = sorted((target / "Actor_08").glob("*.wav"))
    surprised = [p for p in considered if p.name.split("-")[2] == "08"]
    disgust = [p for p in considered if p.name.split("-")[2] == "07"]
    assert len(considered) == 17 and len(surprised) == 2 and len(disgust) == 2

    job_dict["dataset"].update(subset={"speakers": ["08"], "per_class": 5}, skip_bad_files=True)
    job_dict["budget"]["trials"] = 1
    job_dict["transfer"] = [{"name": "ravdess", "root": str(target), "subset": {"speakers": ["08"]}}]
    result = Study(parse_job(job_dict), tmp_path / "out").run()
    assert "disgust" not in result.data.classes and result.data.dropped == {}
    transfer = result.transfer["ravdess"]
    assert transfer.dropped == {"surprised": len(surprised)}
    assert transfer.not_in_model == {"disgust": len(disgust)}
    assert [line.split(":")[0] for line in transfer.skipped_files] == [str(broken)]
    assert transfer.n == sum(map(sum, transfer.confusion_matrix)) == 12
    total = transfer.n + sum(transfer.dropped.values()) + sum(transfer.not_in_model.values()) + len(transfer.skipped_files)
    assert total == len(considered)


@pytest.mark.parametrize("subset, kept, dropped", [
    (None, 28, 4),                    # the whole folder: 32 files
    ({"fraction": 0.5}, 14, 2),       # half of each class, surprised counted as a class: 16 files
    ({"per_class": 1}, 6, 1),         # one per class (calm and neutral are one class): 7 files
])
def test_dropped_is_counted_in_the_population_a_subset_takes(ravdess_mini_root, subset, kept, dropped):
    from serbench.data.adapters.ravdess import RAVDESS
    from serbench.data.corpus import load_corpus
    from serbench.spec import SubsetSpec

    corpus = load_corpus(RAVDESS(), ravdess_mini_root, None, SubsetSpec(**subset) if subset else None, 0, False)
    assert len(corpus.utterances) == kept and corpus.dropped == {"surprised": dropped}


def test_a_grid_search_records_its_grid_and_the_board_shows_how_much_of_it_ran(cli, job_dict, tmp_path):
    """A real grid study whose budget (3) goes past its grid (lr at 1 point x 2 maxlen
    values = 2 configurations): result.json records the grid's size and the trials run,
    and every leaderboard format shows 2/2 (100%)."""
    import csv
    import io
    import json

    from serbench.engines.grid_search import GridSearch

    job_dict.update(name="grid_covered", engine={"name": "grid", "options": {"grid_points": 1}})
    job_dict["training"].update(epochs=1, unfreeze=2)
    job_dict["search_space"] = {"lr": job_dict["search_space"]["lr"], "maxlen": {"type": "choice", "values": [16000, 24000]}}
    job_dict["budget"]["trials"] = 3
    spec = parse_job(job_dict)
    grid = GridSearch(spec.search_space, spec.seed, GridSearch.Options(grid_points=1))
    assert grid.space_size() == len(grid.configurations()) == 2
    result = Study(spec, tmp_path / "results" / "grid_covered").run()
    (fold,) = result.folds
    assert result.stopped_by == "exhausted" and len(result.trials) == 2
    assert fold.search_space_size == 2 and fold.trials_run == 2

    root = tmp_path / "results"
    board = json.loads(cli("leaderboard", root, "--format", "json")[1])
    (row,) = board["groups"][0]["rows"]
    assert (row["space_size"], row["space_trials"], row["space_covered"]) == (2, 2, 1.0)
    (line,) = csv.DictReader(io.StringIO(cli("leaderboard", root, "--format", "csv")[1]))
    assert (line["space_size"], float(line["space_covered"])) == ("2", 1.0)
    for form in ("table", "md", "html"):
        code, out, err = cli("leaderboard", root, "--format", form)
        assert code == 0, err
        assert "space covered" in out and "2/2 (100%)" in out, form
