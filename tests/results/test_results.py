"""Time to threshold, best trial, efficiency, and atomic writes."""

import json

from serbench.results.schema import TrialRecord

from serbench import atomic

from serbench.results.summary import best_trial, threshold_hits


def trial(number, value, seconds, status="ok"):
    return TrialRecord(
        number=number,
        params={"lr": 0.001 * (number + 1)},
        status=status,
        value=value if status == "ok" else None,
        reason=None if status == "ok" else "error",
        duration_s=30,
        cumulative_s=seconds,
    )


TRIALS = [trial(0, 0.62, 60), trial(1, 0.83, 120), trial(2, None, 180, "failed"), trial(3, 0.91, 300), trial(4, 0.91, 360)]


def test_threshold_hits_report_the_first_trial_and_its_minutes():
    hits = {h.threshold: h for h in threshold_hits(TRIALS, [0.8, 0.9, 0.95])}
    assert hits[0.8].reached and hits[0.8].trial == 1 and hits[0.8].minutes == 2.0
    assert hits[0.8].efficiency == 0.8 / 2.0
    assert hits[0.9].trial == 3 and hits[0.9].minutes == 5.0
    assert not hits[0.95].reached and hits[0.95].trial is None


def test_best_is_the_earliest_highest_finished_trial():
    best = best_trial(TRIALS)
    assert best.trial == 3 and best.val_bca == 0.91
    assert best.minutes == 5.0 and best.efficiency == 0.91 / 5.0


def test_failed_trials_never_count():
    assert best_trial([trial(0, None, 10, "failed")]) is None
    assert not threshold_hits([trial(0, None, 10, "failed")], [0.1])[0].reached


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "deep" / "result.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]
