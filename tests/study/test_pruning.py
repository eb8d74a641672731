"""Pruning in the study: epoch-level reports reach the fold's pruner through the pool's
messages to the driver, pruned trials are journalled and told as such, the epoch budget,
``objective: best_epoch`` and the frozen probe -- on real studies (EmoDB audio, Whisper
weights) and on the real scheduler with synthetic curves."""

import json

import numpy as np
import pytest

from conftest import run_search
from serbench.engines.base import Outcome
from serbench.execution.backend import ask_driver
from serbench.plugin.registry import registry
from serbench.pruning.base import PruningContext
from serbench.results.journal import TrialJournal
from serbench.spec import Budget, FloatParam
from serbench.study.pruning import PluginPruning
from serbench.study.search import FoldSearch

SPACE = {"lr": FloatParam(type="float", low=1e-4, high=1e-2, log=True)}


def synthetic_trial(epochs: int):
    """A trial that reports a curve rising towards a level set by its lr, asking the
    driver after each epoch, as a study's trial does; the record fields it returns."""

    def run(number, params):
        level = 1.0 - abs(np.log10(params["lr"]) + 3.0) / 2  # best near lr = 1e-3
        curve = []
        for epoch in range(1, epochs + 1):
            value = float(level * (1 - 0.5**epoch))
            curve.append({"epoch": epoch, "bca": value})
            if ask_driver(("report", epoch, value)) and epoch < epochs:
                return {"status": "pruned", "value": value, "curve": curve, "epochs_trained": epoch, "pruned_at": epoch}
        return {"status": "ok", "value": curve[-1]["bca"], "curve": curve, "epochs_trained": epochs}

    return run


def fold_search(tmp_path, pruner_name, options=None, budget=None, epochs=4):
    from serbench.engines.random_search import RandomSearch

    entry = registry().get("pruner", pruner_name)
    pruner = entry.cls(PruningContext(max_step=epochs, seed=0), entry.cls.Options.model_validate(options or {}))
    journal = TrialJournal(tmp_path / f"{pruner_name}-trials.jsonl")
    return FoldSearch(
        0, RandomSearch(SPACE, 0), budget or Budget(trials=12), journal,
        pruning=PluginPruning(pruner), planned_epochs=lambda params: epochs,
    )


def test_reports_reach_the_pruner_and_pruned_trials_are_journalled_and_told(tmp_path):
    search = fold_search(tmp_path, "successive-halving", {"min_resource": 1, "reduction_factor": 2})
    told = []
    tell = search.engine.tell
    search.engine.tell = lambda number, outcome: (told.append((number, outcome)), tell(number, outcome))[1]
    trials, stopped = run_search(search, synthetic_trial(4))
    assert stopped == "trials" and len(trials) == 12
    pruned = [t for t in trials if t.status == "pruned"]
    assert pruned and any(t.status == "ok" for t in trials)
    for record in pruned:
        assert record.pruned_at == record.curve[-1].epoch < 4 and record.value == record.curve[-1].bca
    # what the engine was told: pruned as pruned, with the curve
    by_number = dict(told)
    for record in trials:
        outcome = by_number[record.number]
        assert outcome.status == record.status
        assert outcome.curve == tuple((p.epoch, p.bca) for p in record.curve)
    # the same decisions as a fresh pruner fed the same reports in the same order
    entry = registry().get("pruner", "successive-halving")
    fresh = entry.cls(PruningContext(max_step=4, seed=0), entry.cls.Options(min_resource=1, reduction_factor=2))
    for record in trials:
        decisions = [fresh.report(record.number, p.epoch, p.bca) for p in record.curve]
        fresh.finished(record.number, record.status)
        assert not any(decisions[:-1])
        assert decisions[-1] == (record.status == "pruned") or record.status == "ok"


def test_a_pruned_search_trains_fewer_epochs_and_the_epoch_budget_stops_it(tmp_path):
    full, _ = run_search(fold_search(tmp_path, "none"), synthetic_trial(4))
    assert sum(t.epochs_trained for t in full) == 48
    halving, _ = run_search(
        fold_search(tmp_path, "successive-halving", {"reduction_factor": 2}), synthetic_trial(4)
    )
    assert sum(t.epochs_trained for t in halving) < 48
    # an epoch budget of 20: 5 full trials without a pruner; more trials with one
    budget = Budget(trials=50, epochs=20)
    unpruned, stopped = run_search(fold_search(tmp_path, "none", budget=budget), synthetic_trial(4))
    assert stopped == "epochs" and len(unpruned) == 5
    pruned, stopped = run_search(
        fold_search(tmp_path, "successive-halving", {"reduction_factor": 2}, budget=budget), synthetic_trial(4)
    )
    assert stopped == "epochs" and len(pruned) > 5
    spent = sum(t.epochs_trained for t in pruned)
    assert spent >= 20 and spent - pruned[-1].epochs_trained < 20


def test_a_report_of_a_trial_no_longer_pending_is_told_to_stop(tmp_path):
    search = fold_search(tmp_path, "none")
    assert search.report(7, 1, 0.5) is True


def test_outcome_of_a_journalled_pruned_trial_is_pruned_with_its_curve(tmp_path):
    from serbench.results.schema import TrialRecord
    from serbench.study.replay import outcome_of

    record = TrialRecord(
        number=0, params={"lr": 1e-3}, status="pruned", value=0.4, duration_s=1, cumulative_s=1,
        curve=[{"epoch": 0, "bca": 0.3}, {"epoch": 1, "bca": 0.4}], epochs_trained=1, pruned_at=1,
    )
    assert outcome_of(record) == Outcome.pruned(0.4, ((0, 0.3), (1, 0.4)))


# --- real studies --------------------------------------------------------------------


def run_job(cli, write_job, tmp_path, job):
    code, _, err = cli("run", write_job(job), "--out", tmp_path)
    assert code == 0, err
    return json.loads((tmp_path / job["name"] / "result.json").read_text())


@pytest.fixture
def pruning_job(job_dict):
    """Six frozen-encoder trials of 2..4 epochs over a wide lr range (the smoke subset)."""
    job_dict["budget"]["trials"] = 6
    job_dict["search_space"]["lr"] = {"type": "float", "low": 1e-6, "high": 3e-3, "log": True}
    job_dict["search_space"]["epochs"] = {"type": "int", "low": 2, "high": 4}
    job_dict["search_space"]["unfreeze"] = {"type": "int", "low": 4, "high": 5}
    job_dict["pruner"] = {"name": "successive-halving", "options": {"min_resource": 1, "reduction_factor": 2}}
    return job_dict


def test_a_real_study_journals_curves_and_pruned_trials(cli, write_job, tmp_path, pruning_job):
    result = run_job(cli, write_job, tmp_path, pruning_job)
    journal = [json.loads(line) for line in (tmp_path / "test_job" / "trials.jsonl").read_text().splitlines()]
    assert journal == result["trials"]
    statuses = [t["status"] for t in result["trials"]]
    assert "pruned" in statuses and "ok" in statuses, statuses
    for trial in result["trials"]:
        epochs = trial["params"]["epochs"]
        steps = [p["epoch"] for p in trial["curve"]]
        assert trial["value"] == trial["curve"][-1]["bca"]
        assert len(trial["epoch_losses"]) == trial["epochs_trained"]
        if trial["status"] == "ok":
            assert steps == list(range(1, epochs + 1)) and trial["pruned_at"] is None
        else:
            assert steps == list(range(1, trial["pruned_at"] + 1)) and trial["pruned_at"] < epochs
    ok = [t for t in result["trials"] if t["status"] == "ok"]
    assert result["best"]["trial"] in [t["number"] for t in ok] and result["best"]["pruned"] is False
    assert result["best"]["val_bca"] == max(t["value"] for t in ok)
    pruning = result["pruning"]
    assert pruning["pruner"] == "successive-halving" and pruning["decided_by"].startswith("serbench successive-halving")
    assert pruning["pruned"] == statuses.count("pruned") and pruning["completed"] == len(ok)
    assert pruning["epochs_spent"] == sum(t["epochs_trained"] for t in result["trials"]) == result["folds"][0]["epochs_spent"]


def test_reports_do_not_change_a_trials_score(cli, write_job, tmp_path, job_dict):
    """Scoring between epochs draws no random numbers: every epoch reported or only the
    last, the trials score the same."""
    every = run_job(cli, write_job, tmp_path / "every", dict(job_dict, name="every"))
    job_dict["pruner"] = {"report_every": 100}
    last = run_job(cli, write_job, tmp_path / "last", dict(job_dict, name="last"))
    assert [t["value"] for t in every["trials"]] == [t["value"] for t in last["trials"]]
    assert all(len(t["curve"]) == 1 for t in last["trials"])
    assert any(len(t["curve"]) > 1 for t in every["trials"])


def test_best_epoch_objective_scores_the_best_epoch_and_trains_the_final_model_for_it(cli, write_job, tmp_path, pruning_job):
    pruning_job["pruner"] = {"name": "none"}
    pruning_job["objective"] = "best_epoch"
    result = run_job(cli, write_job, tmp_path, pruning_job)
    for trial in result["trials"]:
        values = [p["bca"] for p in trial["curve"]]
        assert trial["value"] == max(values)
        assert trial["best_epoch"] == trial["curve"][values.index(max(values))]["epoch"]
    best = result["best"]
    assert best["epoch"] == result["trials"][best["trial"]]["best_epoch"]
    assert result["final_params"]["epochs"] == best["epoch"]
    assert result["pruning"]["objective"] == "best_epoch"


def test_the_frozen_probe_scores_epoch_0_and_can_stop_a_trial_before_encoder_training(cli, write_job, tmp_path, pruning_job):
    pruning_job["search_space"]["unfreeze"] = {"type": "int", "low": 0, "high": 1}
    pruning_job["search_space"]["epochs"] = {"type": "int", "low": 2, "high": 3}
    pruning_job["search_space"]["maxlen"] = {"type": "choice", "values": [16000]}
    # a learning rate far too low for the head, or a good one: the probe tells them apart
    pruning_job["search_space"]["lr"] = {"type": "choice", "values": [1e-7, 2e-3]}
    pruning_job["pruner"] = {"name": "successive-halving", "options": {"reduction_factor": 2}, "frozen_rung": True}
    result = run_job(cli, write_job, tmp_path, pruning_job)
    for trial in result["trials"]:
        assert trial["curve"][0]["epoch"] == 0 and trial["probe_s"] > 0
    at_probe = [t for t in result["trials"] if t["pruned_at"] == 0]
    assert at_probe, [t["curve"] for t in result["trials"]]
    assert all(t["params"]["lr"] == 1e-7 for t in at_probe)
    for trial in at_probe:
        assert trial["epochs_trained"] == 0 and trial["epoch_losses"] == [] and len(trial["curve"]) == 1
    assert result["pruning"]["probe_seconds"] == pytest.approx(sum(t["probe_s"] for t in result["trials"]))


def test_optuna_can_prune_with_its_own_pruner(cli, write_job, tmp_path, pruning_job):
    pruning_job["engine"] = {"name": "optuna", "options": {"n_startup_trials": 2}}
    pruning_job["pruner"] = {"name": "median", "by": "engine", "options": {"n_startup_trials": 2}}
    result = run_job(cli, write_job, tmp_path, pruning_job)
    assert "optuna" in result["pruning"]["decided_by"] and "MedianPruner" in result["pruning"]["decided_by"]
    assert result["pruning"]["by"] == "engine"
    assert {t["status"] for t in result["trials"]} <= {"ok", "pruned"}


def test_pruning_by_an_engine_without_its_own_pruner_is_refused(cli, write_job, pruning_job):
    from conftest import assert_one_line_error

    pruning_job["engine"] = {"name": "hyperopt"}
    pruning_job["pruner"] = {"name": "median", "by": "engine"}
    code, _, err = cli("validate", write_job(pruning_job))
    assert_one_line_error(code, err, "pruner.by: engine", "hyperopt", "pruner.by: serbench")


def test_an_unknown_pruner_or_option_is_refused(cli, write_job, pruning_job):
    from conftest import assert_one_line_error

    pruning_job["pruner"] = {"name": "no-such-pruner"}
    code, _, err = cli("validate", write_job(pruning_job))
    assert_one_line_error(code, err, "pruner.name", "no-such-pruner")
    pruning_job["pruner"] = {"name": "median", "options": {"n_startup": 3}}
    code, _, err = cli("validate", write_job(pruning_job))
    assert_one_line_error(code, err, "pruner.options", "n_startup")
