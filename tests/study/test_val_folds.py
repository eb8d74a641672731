"""``dataset.protocol.val_folds`` k > 1: inner cross-validation. Each trial trains once
per validation fold, on that fold's training part, and its value is the mean of the
folds' validation BCA; the final model trains on everything but the test split, once."""

from __future__ import annotations

import statistics

import pytest

from serbench.errors import SpecError
from serbench.spec import parse_job
from serbench.study.output import spec_fingerprint
from serbench.study.study import Study


def test_a_trial_trains_once_per_validation_fold_and_scores_their_mean(job_dict, tmp_path, monkeypatch):
    from serbench.training import fit as fitting

    trained: list[set[str]] = []
    real_fit = fitting.fit

    def fit_spy(model, clips, *args, **kwargs):
        trained.append({c.id for c in clips})
        return real_fit(model, clips, *args, **kwargs)

    monkeypatch.setattr(fitting, "fit", fit_spy)
    job_dict["dataset"]["protocol"] = {"name": "holdout", "test_fraction": 0.2, "val_folds": 3}
    job_dict["budget"] = {"trials": 2}
    study = Study(parse_job(job_dict), tmp_path, events=None)
    result = study.run()
    split = study.prepared.inputs.data.folds[0].split
    runs = split.validation_runs()
    assert len(runs) == 3
    # two trials x three folds, each on its fold's training part; then the final model on all
    assert trained == [{u.id for u in train} for train, _ in runs] * 2 + [{u.id for u in split.selection}]
    for trial in result.trials:
        assert len(trial.val_folds) == 3
        assert trial.value == pytest.approx(statistics.fmean(trial.val_folds))
        assert trial.curve[-1].bca == pytest.approx(trial.value)
        assert len(trial.epoch_losses) == trial.epochs_trained == trial.params["epochs"]
    assert result.test.n == len(split.test)


def test_one_validation_fold_is_the_default_and_leaves_fingerprints_unchanged(job_dict):
    default = parse_job(job_dict)
    assert default.dataset.protocol.val_folds == 1
    assert "val_folds" not in default.fingerprint_data()["dataset"]["protocol"]
    job_dict["dataset"]["protocol"]["val_folds"] = 1
    assert spec_fingerprint(parse_job(job_dict)) == spec_fingerprint(default)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pruner": {"name": "median"}}, "does not combine with a pruner"),
        ({"select_on": "test"}, "does not combine with select_on: test"),
        ({"dataset": {"protocol": {"val_fraction": 0.25}}}, "give val_fraction or val_folds > 1, not both"),
    ],
)
def test_validation_folds_refuse_what_they_cannot_honour(job_dict, change, message):
    job_dict["dataset"]["protocol"] = {"name": "holdout", "test_fraction": 0.2, "val_folds": 3}
    for key, value in change.items():
        if key == "dataset":
            job_dict["dataset"]["protocol"].update(value["protocol"])
        else:
            job_dict[key] = value
    with pytest.raises(SpecError, match=message):
        parse_job(job_dict)
