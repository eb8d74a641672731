"""``select_on: test``, the paper's optimistic protocol: trials train on train + val and
are scored on the test split, so the reported test score is the best of the trials'
scores on it; results say so. The default never lets a trial see the test split
(``tests/study/test_study.py``)."""

from __future__ import annotations

from serbench.spec import parse_job
from serbench.study.output import spec_fingerprint
from serbench.study.study import Study


def test_optimistic_trials_are_scored_on_the_test_split_that_is_reported(job_dict, tmp_path, monkeypatch):
    from serbench.training import fit as fitting

    scored: list[set[str]] = []
    trained: list[set[str]] = []
    real_logits, real_fit = fitting.logits_of, fitting.fit

    def logits_spy(model, clips, *args, **kwargs):
        scored.append({c.id for c in clips})
        return real_logits(model, clips, *args, **kwargs)

    def fit_spy(model, clips, *args, **kwargs):
        trained.append({c.id for c in clips})
        return real_fit(model, clips, *args, **kwargs)

    monkeypatch.setattr(fitting, "logits_of", logits_spy)
    monkeypatch.setattr(fitting, "fit", fit_spy)
    job_dict["select_on"] = "test"
    job_dict["budget"] = {"trials": 3}
    study = Study(parse_job(job_dict), tmp_path, events=None)
    result = study.run()
    split = study.prepared.inputs.data.folds[0].split
    test_ids = {u.id for u in split.test}
    selection_ids = {u.id for u in split.selection}
    assert result.select_on == "test"
    assert all(ids == selection_ids for ids in trained), "every run trains on train + val"
    assert scored and all(ids == test_ids for ids in scored), "every score is on the test split"
    # The final model is the best trial retrained as it was: its test score is the best
    # of the trials' scores on the test split.
    assert result.test.bca == max(t.value for t in result.trials if t.status == "ok") == result.best.val_bca


def test_the_default_is_validation_and_leaves_fingerprints_unchanged(job_dict):
    honest = parse_job(job_dict)
    assert honest.select_on == "validation"
    assert "select_on" not in honest.fingerprint_data()
    optimistic = parse_job({**job_dict, "select_on": "test"})
    assert spec_fingerprint(optimistic) != spec_fingerprint(honest)
