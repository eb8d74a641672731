"""Statistics over seeds in ``serbench leaderboard`` and the report: the bootstrap interval
of the mean test BCA, the median time to a threshold over the seeds that reached it, the
mean best-so-far curve with its min–max band, the paired comparison of engines
(Wilcoxon, Friedman), ALC, and 𝓔 of a LOSO study from its total search time.

Two real tiny studies (EmoDB, whisper-tiny.en, frozen encoder): a holdout one of three
trials and a LOSO one of two folds with two trials each. Their seeds and engines are made
from them the way the other board tests make pruned results (:func:`variant`): each
trial's validation BCA and journal time are set by hand, so the thresholds, bests and
curves that follow from them (recomputed with ``serbench.results.summary``) are known; the
seed's test BCA is set too (its confusion matrix stays the real study's). Every result is
validated with ``Result.model_validate`` before it is written. Expected numbers are
recomputed here from the formulas or with scipy on the same pairs, never copied.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
import re
import statistics

import numpy as np
import pytest
from conftest import SMOKE_JOB
from scipy import stats

from serbench.leaderboard.board import build_rows, load_results, make_board
from serbench.leaderboard.check import check_html, extract_figure
from serbench.leaderboard.html import render_html
from serbench.leaderboard.plots import anytime_plot
from serbench.leaderboard.stats import alc, bootstrap_ci, paired_test
from serbench.results.schema import Result, TrialRecord
from serbench.results.summary import best_trial, threshold_hits
from serbench.spec import parse_job
from serbench.study.study import Study

THRESHOLDS = [0.2, 0.5]

# Holdout, three trials: (validation BCA, journal seconds) of each trial, per seed.
HOLDOUT_SEARCHES = {
    0: [(0.30, 60), (0.55, 150), (0.40, 240)],  # 0.5 at 2.5 min
    1: [(0.25, 50), (0.35, 120), (0.45, 200)],  # 0.5 never
    2: [(0.60, 90), (0.30, 180), (0.62, 270)],  # 0.5 at 1.5 min
    3: [(0.10, 30), (0.52, 100), (0.70, 300)],  # 0.5 at 100 s; 0.2 at 100 s too
    4: [(0.20, 45), (0.30, 130), (0.48, 210)],  # 0.5 never
}
RANDOM_TEST = [0.52, 0.61, 0.47, 0.58, 0.55]
OPTUNA_TEST = [0.55, 0.66, 0.46, 0.65, 0.57]  # differences 0.03, 0.05, -0.01, 0.07, 0.02: no ties

# LOSO (two folds, two trials each), three engines: test BCA per seed (grid has a fourth seed).
LOSO_TEST = {"random": [0.50, 0.58, 0.46], "optuna": [0.55, 0.60, 0.52], "grid": [0.48, 0.62, 0.47, 0.51]}


def loso_searches(seed: int, engine: int) -> dict[int, list[tuple[float, float]]]:
    """Fold 0 reaches 0.5 at its second trial; fold 1 reaches it (0.5 + 0.03 s - 0.01)
    from seed 1 on; engines differ in speed."""
    pace = 1 + 0.1 * engine
    return {
        0: [(0.30 + 0.05 * seed, (40 + 10 * seed) * pace), (0.55 + 0.02 * seed, (100 + 5 * seed) * pace)],
        1: [(0.45, (30 + 5 * seed) * pace), (0.49 + 0.03 * seed, 90 * pace)],
    }


def _job(name, **changes):
    job = copy.deepcopy(SMOKE_JOB)
    job.update(name=name, thresholds=THRESHOLDS, **changes)
    return job


@pytest.fixture(scope="session")
def studies(tmp_path_factory):
    """``{"holdout": data, "loso": data}`` of the two real studies (about 40 s on 2 CPUs)."""
    root = tmp_path_factory.mktemp("seed-stats-studies")
    holdout = _job("ss_holdout", budget={"trials": 3})
    loso = _job("ss_loso", budget={"trials": 2}, dataset={
        "name": "emodb",
        "protocol": {"name": "loso", "val_speakers": 1, "folds": ["13", "14"]},
        "subset": {"speakers": ["13", "14", "15"], "per_class": 10},
    })
    out = {}
    for key, job in (("holdout", holdout), ("loso", loso)):
        Study(parse_job(job), root / job["name"]).run()
        out[key] = json.loads((root / job["name"] / "result.json").read_text())
    return out


def variant(data: dict, job: str, seed: int, searches: dict[int, list[tuple[float, float]]],
            test: list[float], engine: str | None = None, **budget) -> dict:
    """``data`` (a real result) as run ``job`` with ``seed`` (and ``engine``, ``budget``
    changes): each fold's trials, in number order, completed with the (validation BCA,
    journal seconds) of ``searches[fold]``; the fold's best, thresholds and search time
    follow from them; ``test`` is each fold's test BCA."""
    data = copy.deepcopy(data)
    spec = data["spec"]
    data["job"] = job
    spec.update(name=job, seed=seed)
    if engine is not None:
        spec["engine"] = {**spec["engine"], "name": engine}
    if budget:
        spec["budget"] = {**spec["budget"], **budget}
    for fold in data["folds"]:
        trials = sorted((t for t in data["trials"] if t["fold"] == fold["fold"]), key=lambda t: t["number"])
        points = searches[fold["fold"]]
        assert len(points) == len(trials)
        for trial, (value, seconds) in zip(trials, points):
            trial.update(status="ok", value=value, cumulative_s=float(seconds), reason=None, error=None)
            if trial.get("curve"):
                trial["curve"][-1]["bca"] = value
        records = sorted((TrialRecord.model_validate(t) for t in trials), key=lambda t: t.cumulative_s)
        fold["best"] = best_trial(records).model_dump(mode="json")
        fold["thresholds"] = [hit.model_dump(mode="json") for hit in threshold_hits(records, spec["thresholds"])]
        fold["search_seconds"] = max(t.cumulative_s for t in records)
        fold["test"]["bca"] = test[fold["fold"]]
    if len(data["folds"]) == 1:
        (fold,) = data["folds"]
        data.update(best=fold["best"], thresholds=fold["thresholds"])
        data["test"]["bca"] = test[0]
    data["search_seconds"] = sum(fold["search_seconds"] for fold in data["folds"])
    data["test_summary"].update(bca_mean=statistics.fmean(test), bca_sd=statistics.pstdev(test), bca_per_fold=test)
    Result.model_validate(data)
    return data


def write(root, name, data):
    (root / name).mkdir(parents=True)
    (root / name / "result.json").write_text(json.dumps(data), encoding="utf-8")


def holdout_runs(studies, engine, tests, seeds=range(5), **budget):
    return {f"ss_{engine}_s{seed}": variant(studies["holdout"], f"ss_{engine}_s{seed}", seed,
                                            {0: HOLDOUT_SEARCHES[seed]}, [tests[seed]], engine, **budget)
            for seed in seeds}


def loso_runs(studies, engine, index, seeds):
    out = {}
    for seed in seeds:
        value = LOSO_TEST[engine][seed]
        out[f"ss_loso_{engine}_s{seed}"] = variant(studies["loso"], f"ss_loso_{engine}_s{seed}", seed,
                                                   loso_searches(seed, index), [value - 0.02, value + 0.02], engine)
    return out


@pytest.fixture(scope="session")
def made(studies):
    """Every result of the main board, by job: holdout random and optuna over seeds 0..4
    (a Wilcoxon pair), LOSO random, optuna (seeds 0..2) and grid (0..3; a Friedman triple)."""
    out = {}
    out.update(holdout_runs(studies, "random", RANDOM_TEST))
    out.update(holdout_runs(studies, "optuna", OPTUNA_TEST))
    for index, engine in enumerate(("random", "optuna", "grid")):
        out.update(loso_runs(studies, engine, index, range(len(LOSO_TEST[engine]))))
    return out


@pytest.fixture(scope="session")
def board_dir(tmp_path_factory, made):
    root = tmp_path_factory.mktemp("seed-stats-board")
    for name, data in made.items():
        write(root, name, data)
    return root


@pytest.fixture(scope="session")
def board_json(board_dir):
    from serbench.cli.leaderboard import render

    return json.loads(render(make_board(board_dir), "json"))


def rows_of(board: dict) -> dict[str, dict]:
    return {row["job"]: row for group in board["groups"] for row in group["rows"]}


def row_of(board: dict, prefix: str) -> dict:
    (row,) = [row for job, row in rows_of(board).items() if job.startswith(prefix + "_s0,")]
    return row


def md_cells(md: str, job: str) -> dict[str, str]:
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| rank |"))
    line = next(line for line in lines if line.startswith("| ") and f"| {job} |" in line)

    def split(text: str) -> list[str]:
        return [cell.strip() for cell in re.split(r"(?<!\\)\|", text.strip().strip("|"))]

    return dict(zip(split(header), split(line)))


# --- the bootstrap interval ---------------------------------------------------------------


def exact_percentile_interval(values: list[float]) -> tuple[float, float]:
    """The percentile interval of the exact bootstrap distribution of the mean: every one
    of the n**n equally likely resamples enumerated."""
    means = sorted(statistics.fmean(sample) for sample in itertools.product(values, repeat=len(values)))
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def test_test_bca_has_a_seeded_percentile_bootstrap_interval_over_seeds(board_json):
    row = row_of(board_json, "ss_random")
    assert row["n_seeds"] == 5 and row["test_bca"]["mean"] == pytest.approx(statistics.fmean(RANDOM_TEST))
    assert row["test_bca"]["sd"] == pytest.approx(statistics.pstdev(RANDOM_TEST))
    ci = row["test_bca_ci"]
    assert (ci["method"], ci["confidence"], ci["resamples"], ci["random_state"], ci["n"]) == \
        ("percentile", 0.95, 10000, 0, 5)
    assert ci["low"] < row["test_bca"]["mean"] < ci["high"]
    assert min(RANDOM_TEST) <= ci["low"] and ci["high"] <= max(RANDOM_TEST)
    # scipy on the same values with the same settings gives the same interval ...
    again = stats.bootstrap((np.array(RANDOM_TEST),), np.mean, n_resamples=10000, confidence_level=0.95,
                            method="percentile", rng=np.random.default_rng(0)).confidence_interval
    assert (ci["low"], ci["high"]) == pytest.approx((again.low, again.high), abs=1e-12)
    # ... and the exact bootstrap distribution (all 5**5 resamples) agrees to Monte Carlo error
    low, high = exact_percentile_interval(RANDOM_TEST)
    assert ci["low"] == pytest.approx(low, abs=0.01) and ci["high"] == pytest.approx(high, abs=0.01)
    # the same board built twice: the same interval (seeded)
    assert bootstrap_ci(RANDOM_TEST).low == bootstrap_ci(RANDOM_TEST).low == ci["low"]


def test_one_seed_has_no_interval_even_with_several_folds(tmp_path, made):
    write(tmp_path, "one", made["ss_random_s0"])
    write(tmp_path, "loso", made["ss_loso_random_s0"])
    board = make_board(tmp_path)
    assert [row.test_ci for row in board.rows] == [None, None]
    loso = next(row for row in board.rows if row.folds == 2)
    assert loso.test.sd == pytest.approx(0.02)  # the sd over folds stays
    assert bootstrap_ci([0.5]) is None and bootstrap_ci([]) is None


def test_the_interval_is_in_every_format(cli, board_dir, board_json):
    row = row_of(board_json, "ss_random")
    ci = row["test_bca_ci"]
    shown = f"[{ci['low']:.3f}, {ci['high']:.3f}]"
    md = cli("leaderboard", board_dir, "--format", "md")[1]
    assert md_cells(md, row["job"])["test BCA 95% CI"] == shown
    table = cli("leaderboard", board_dir)[1]  # rich folds the cell within its column
    assert "95% CI" in table and f"[{ci['low']:.3f}," in table and f"{ci['high']:.3f}]" in table
    lines = {line["job"]: line for line in csv.DictReader(io.StringIO(cli("leaderboard", board_dir, "--format",
                                                                           "csv")[1]))}
    assert float(lines[row["job"]]["test_bca_ci_low"]) == pytest.approx(ci["low"], abs=1e-6)
    assert float(lines[row["job"]]["test_bca_ci_high"]) == pytest.approx(ci["high"], abs=1e-6)
    html = render_html(make_board(board_dir))
    assert shown in html and "percentile bootstrap" in html


# --- time to a threshold over seeds -------------------------------------------------------


def test_multi_seed_threshold_is_the_median_over_the_seeds_that_reached_it(cli, board_dir, board_json):
    row = row_of(board_json, "ss_random")
    cells = {cell["threshold"]: cell for cell in row["thresholds"]}
    reached = []
    for seed, points in HOLDOUT_SEARCHES.items():
        first = next(((v, s) for v, s in sorted(points, key=lambda p: p[1]) if v >= 0.5), None)
        if first is not None:
            reached.append(first[1] / 60)
    assert len(reached) == 3
    high = cells[0.5]
    assert (high["reached"], high["runs"]) == (3, 5)
    assert high["minutes"] == pytest.approx(statistics.median(reached))
    assert high["minutes"] != pytest.approx(statistics.fmean(reached))  # a median, not the mean
    assert high["efficiency"] == pytest.approx(0.5 / statistics.median(reached))
    assert high["rule"] == "median over the seeds that reached it"
    low = cells[0.2]
    firsts = [next(s for v, s in sorted(points, key=lambda p: p[1]) if v >= 0.2) / 60
              for points in HOLDOUT_SEARCHES.values()]
    assert (low["reached"], low["runs"]) == (5, 5) and low["minutes"] == pytest.approx(statistics.median(firsts))
    md = cli("leaderboard", board_dir, "--format", "md")[1]
    shown = md_cells(md, row["job"])
    assert shown["≥0.5 min (trial)"] == f"{statistics.median(reached):.2f} (3/5)"
    assert shown["≥0.2 min (trial)"] == f"{statistics.median(firsts):.2f} (5/5)"
    lines = {line["job"]: line for line in csv.DictReader(io.StringIO(cli("leaderboard", board_dir, "--format",
                                                                           "csv")[1]))}
    assert lines[row["job"]]["reached_0.5"] == "3/5"
    assert float(lines[row["job"]]["minutes_to_0.5"]) == pytest.approx(statistics.median(reached), abs=1e-6)


def test_a_loso_seed_reaches_a_threshold_when_every_fold_does_after_their_summed_minutes(board_json):
    row = row_of(board_json, "ss_loso_random")
    cell = next(cell for cell in row["thresholds"] if cell["threshold"] == 0.5)
    totals = []
    for seed in range(3):
        folds = loso_searches(seed, 0)
        firsts = [next((s for v, s in points if v >= 0.5), None) for points in folds.values()]
        if all(first is not None for first in firsts):
            totals.append(sum(firsts) / 60)
    assert len(totals) == 2  # seed 0's second fold stops at 0.49
    assert (cell["reached"], cell["runs"], cell["searches"], cell["searches_reached"]) == (2, 3, 6, 5)
    assert cell["minutes"] == pytest.approx(statistics.median(totals))


# --- 𝓔 of a LOSO study ----------------------------------------------------------------------


def test_loso_efficiency_is_the_study_figure_never_a_mean_of_fold_figures(cli, tmp_path, made):
    data = made["ss_loso_random_s1"]
    write(tmp_path, "loso", data)
    code, out, err = cli("leaderboard", tmp_path, "--format", "json")
    assert code == 0, err
    (row,) = rows_of(json.loads(out)).values()
    bests = [fold["best"] for fold in data["folds"]]
    total = sum(best["minutes"] for best in bests)
    study = statistics.fmean(best["val_bca"] for best in bests) / total
    assert row["minutes_to_best"]["mean"] == pytest.approx(total)
    assert row["efficiency"]["mean"] == pytest.approx(study)
    per_fold = [best["efficiency"] for best in bests]
    assert row["efficiency"]["mean"] != pytest.approx(statistics.fmean(per_fold), rel=0.05)
    # the per-fold figures are in the JSON, as recorded
    assert [s["efficiency"] for s in row["searches"]] == per_fold
    assert [s["minutes_to_best"] for s in row["searches"]] == [best["minutes"] for best in bests]
    # a threshold: reached when both folds are, after the minutes summed over the folds
    cell = next(c for c in row["thresholds"] if c["threshold"] == 0.5)
    hits = [next(h for h in fold["thresholds"] if h["threshold"] == 0.5) for fold in data["folds"]]
    assert all(hit["reached"] for hit in hits)
    minutes = sum(hit["minutes"] for hit in hits)
    assert cell["minutes"] == pytest.approx(minutes) and cell["efficiency"] == pytest.approx(0.5 / minutes)
    assert cell["efficiency"] != pytest.approx(statistics.fmean(hit["efficiency"] for hit in hits), rel=0.05)
    shown = md_cells(cli("leaderboard", tmp_path, "--format", "md")[1], "ss_loso_random_s1")
    assert shown["≥0.5 min (trial)"] == f"{minutes:.2f} (Σ 2 folds)"
    assert shown["𝓔 (BCA/min)"] == f"{study:.2f}"
    # seed 0: only one fold reached 0.5
    write(tmp_path / "s0", "loso", made["ss_loso_random_s0"])
    shown = md_cells(cli("leaderboard", tmp_path / "s0", "--format", "md")[1], "ss_loso_random_s0")
    assert shown["≥0.5 min (trial)"] == "not reached (1/2 folds)"


def test_a_multi_seed_loso_row_averages_the_study_figures_of_its_seeds(board_json, made):
    row = row_of(board_json, "ss_loso_optuna")
    figures = []
    for seed in range(3):
        bests = [fold["best"] for fold in made[f"ss_loso_optuna_s{seed}"]["folds"]]
        minutes = sum(best["minutes"] for best in bests)
        figures.append((minutes, statistics.fmean(best["val_bca"] for best in bests) / minutes))
    assert row["minutes_to_best"]["mean"] == pytest.approx(statistics.fmean(m for m, _ in figures))
    assert row["efficiency"]["mean"] == pytest.approx(statistics.fmean(e for _, e in figures))
    assert row["efficiency"]["n"] == 3 and len(row["searches"]) == 6


# --- ALC -------------------------------------------------------------------------------------


def test_alc_of_a_hand_made_step_curve():
    trial = dict(params={}, duration_s=1.0)
    trials = [
        TrialRecord(number=0, status="ok", value=0.4, cumulative_s=30, **trial),
        TrialRecord(number=1, status="pruned", value=0.9, pruned_at=1, cumulative_s=90, **trial),  # partial
        TrialRecord(number=2, status="failed", cumulative_s=120, **trial),
        TrialRecord(number=3, status="ok", value=0.3, cumulative_s=150, **trial),  # below the best: no step
        TrialRecord(number=4, status="ok", value=0.6, cumulative_s=200, **trial),
        TrialRecord(number=5, status="ok", value=0.8, cumulative_s=400, **trial),  # after T
    ]
    t0, budget = 60.0, 300.0

    def g(t):
        return math.log(1 + t / t0)

    # s(t) = 0 on [0, 30), 0.4 on [30, 200), 0.6 on [200, 300]
    expected = (0 * (g(30) - g(0)) + 0.4 * (g(200) - g(30)) + 0.6 * (g(300) - g(200))) / g(300)
    assert alc(trials, budget) == pytest.approx(expected, rel=1e-12)
    # with T = 400 the last trial ends at T and adds nothing; the 0.6 step runs to 400
    assert alc(trials, 400.0) == pytest.approx((0.4 * (g(200) - g(30)) + 0.6 * (g(400) - g(200))) / g(400))
    # a perfect score from the start is 1, a first completed trial at T is 0, no budget is None
    assert alc([TrialRecord(number=0, status="ok", value=1.0, cumulative_s=0, **trial)], 120.0) == pytest.approx(1)
    assert alc(trials[:1], 30.0) == 0 and alc(trials, 0.0) is None


def test_alc_column_is_the_mean_over_seeds_and_folds_with_the_wall_budget_as_T(cli, tmp_path, studies, board_json):
    def g(t):
        return math.log(1 + t / 60)

    def by_hand(points, budget):
        area, best, steps = 0.0, -1.0, []
        for value, seconds in sorted(points, key=lambda p: p[1]):
            if value > best and seconds < budget:
                best = value
                steps.append((seconds, value))
        for (start, value), (end, _) in zip(steps, steps[1:] + [(budget, None)]):
            area += value * (g(end) - g(start))
        return area / g(budget)

    # no wall budget: T is each search's own time (its last trial)
    row = row_of(board_json, "ss_random")
    own = [by_hand(points, max(s for _, s in points)) for points in HOLDOUT_SEARCHES.values()]
    assert row["alc"]["mean"] == pytest.approx(statistics.fmean(own)) and row["alc"]["n"] == 5
    assert [s["alc_budget_s"] for s in row["searches"]] == [max(s for _, s in p) for p in HOLDOUT_SEARCHES.values()]
    loso = row_of(board_json, "ss_loso_grid")
    folds = [by_hand(points, max(s for _, s in points)) for seed in range(4) for points in loso_searches(seed, 2).values()]
    assert loso["alc"]["mean"] == pytest.approx(statistics.fmean(folds)) and loso["alc"]["n"] == 8
    # budget.wall_minutes: T = 5 min for every search
    for name, data in holdout_runs(studies, "random", RANDOM_TEST, seeds=(0, 3), wall_minutes=5).items():
        write(tmp_path, name, data)
    (walled,) = rows_of(json.loads(cli("leaderboard", tmp_path, "--format", "json")[1])).values()
    expected = statistics.fmean(by_hand(HOLDOUT_SEARCHES[seed], 300.0) for seed in (0, 3))
    assert walled["alc"]["mean"] == pytest.approx(expected)
    assert {s["alc_budget_s"] for s in walled["searches"]} == {300.0}
    shown = md_cells(cli("leaderboard", tmp_path, "--format", "md")[1], walled["job"])
    assert shown["alc"] == f"{expected:.3f}"


# --- engines compared across seeds ---------------------------------------------------------


def test_two_engines_are_compared_with_wilcoxon_on_test_bca_paired_by_seed(board_json):
    (pair,) = [c for c in board_json["comparisons"] if c["protocol"] == "holdout"]
    assert pair["engines"] == ["optuna", "random"] and pair["seeds"] == [0, 1, 2, 3, 4]
    assert pair["test"] == "wilcoxon"
    again = stats.wilcoxon(RANDOM_TEST, OPTUNA_TEST)  # scipy's default: exact for 5 untied pairs
    assert pair["p_value"] == pytest.approx(again.pvalue, rel=1e-12)
    assert pair["statistic"] == pytest.approx(again.statistic)
    assert pair["exact"] is True and pair["p_floor"] == 0.0625 and pair["p_value"] >= pair["p_floor"]
    assert "exact" in pair["note"] and "0.0625" in pair["note"]
    assert pair["mean_test_bca"] == pytest.approx({"random": statistics.fmean(RANDOM_TEST),
                                                   "optuna": statistics.fmean(OPTUNA_TEST)})
    assert [p["test_bca"] for p in pair["pairs"]] == [{"random": r, "optuna": o}
                                                      for r, o in zip(RANDOM_TEST, OPTUNA_TEST)]
    assert pair["jobs"]["optuna"] == [f"ss_optuna_s{seed}" for seed in range(5)]


def test_more_engines_are_compared_with_friedman_and_average_ranks(board_json):
    (triple,) = [c for c in board_json["comparisons"] if c["protocol"] == "loso"]
    assert triple["engines"] == ["grid", "optuna", "random"] and triple["test"] == "friedman"
    assert triple["seeds"] == [0, 1, 2]  # grid's seed 3 has no partner
    columns = [LOSO_TEST[engine][:3] for engine in triple["engines"]]
    again = stats.friedmanchisquare(*columns)
    assert triple["p_value"] == pytest.approx(again.pvalue, rel=1e-12)
    assert triple["statistic"] == pytest.approx(again.statistic)
    ranks = {engine: [] for engine in triple["engines"]}
    for seed in range(3):
        order = sorted(triple["engines"], key=lambda engine: -LOSO_TEST[engine][seed])
        for position, engine in enumerate(order, 1):
            ranks[engine].append(position)
    assert triple["average_ranks"] == pytest.approx({e: statistics.fmean(r) for e, r in ranks.items()})
    assert triple["exact"] is False and "chi-square" in triple["note"]


def test_fewer_than_two_shared_seeds_say_so_instead_of_a_number(cli, tmp_path, made):
    write(tmp_path, "r0", made["ss_random_s0"])
    write(tmp_path, "r1", made["ss_random_s1"])
    write(tmp_path, "o1", made["ss_optuna_s1"])
    board = json.loads(cli("leaderboard", tmp_path, "--format", "json")[1])
    (comparison,) = board["comparisons"]
    assert comparison["seeds"] == [1] and comparison["test"] is None and comparison["p_value"] is None
    assert comparison["note"] == "not enough paired seeds"
    md = cli("leaderboard", tmp_path, "--format", "md")[1]
    section = md.split("## Engines compared", 1)[1]
    assert "not enough paired seeds" in section
    assert "not enough paired seeds" in cli("leaderboard", tmp_path)[1]
    # the csv is the rows only
    header = cli("leaderboard", tmp_path, "--format", "csv")[1].splitlines()[0]
    assert "p_value" not in header and len(cli("leaderboard", tmp_path, "--format", "csv")[1].splitlines()) == 3
    # a lone engine is no comparison
    assert paired_test({"a": {0: 0.5, 1: 0.6}, "b": {2: 0.4}}).note == "not enough paired seeds"


def test_comparisons_are_a_section_of_the_table_markdown_and_report(cli, board_dir, board_json):
    pair = next(c for c in board_json["comparisons"] if c["test"] == "wilcoxon")
    triple = next(c for c in board_json["comparisons"] if c["test"] == "friedman")
    md = cli("leaderboard", board_dir, "--format", "md")[1]
    rows, section = md.split("## Engines compared: test BCA paired by seed", 1)
    assert "| ss_random_s0," in rows and "ss_random_s0" not in section
    for comparison in (pair, triple):
        assert f"| {comparison['p_value']:.4g} |" in section
    assert f"random {pair['mean_test_bca']['random']:.3f}" in section
    assert f"grid {triple['mean_test_bca']['grid']:.3f} ({triple['average_ranks']['grid']:.2f})" in section
    table = cli("leaderboard", board_dir)[1]
    assert "Engines compared" in table and f"{pair['p_value']:.4g}" in table
    html = render_html(make_board(board_dir))
    assert '<h2 id="comparisons">' in html and f"<td>{pair['p_value']:.4g}</td>" in html
    assert f"<td>{triple['p_value']:.4g}</td>" in html


# --- anytime curves ---------------------------------------------------------------------------


def test_a_multi_seed_row_draws_its_mean_best_so_far_with_a_min_max_band(board_dir):
    runs = [run for run in load_results(board_dir).runs if run.label.startswith("ss_random_")]
    colours = {run.label: "tab:blue" for run in runs}
    plot = anytime_plot(runs, colours)
    assert plot.marks == {"band": 1, "mean": 1}
    ax = plot.figure.axes[0]
    (mean,) = [line for line in ax.lines if line.get_gid() == "fig-anytime-mean-0"]
    grid = sorted({0.0} | {s / 60 for points in HOLDOUT_SEARCHES.values() for _, s in points})
    assert list(mean.get_xdata()) == pytest.approx(grid)

    def best_at(points, x):
        return max((v for v, s in points if s / 60 <= x), default=math.nan)

    expected, low, high = [], [], []
    for x in grid:
        values = [best_at(points, x) for points in HOLDOUT_SEARCHES.values()]
        bad = any(math.isnan(v) for v in values)
        expected.append(math.nan if bad else statistics.fmean(values))
        low.append(math.nan if bad else min(values))
        high.append(math.nan if bad else max(values))
    assert list(mean.get_ydata()) == pytest.approx(expected, nan_ok=True)
    assert math.isnan(expected[0]) and not math.isnan(expected[-1])  # starts once every seed has a trial
    (band,) = [c for c in ax.collections if c.get_gid() == "fig-anytime-band-0"]
    ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    assert not np.isnan(ys).any()
    assert ys.max() == pytest.approx(max(h for h in high if not math.isnan(h)))
    assert ys.min() == pytest.approx(min(v for v in low if not math.isnan(v)))
    assert "mean of 5 seeds, band min–max" in mean.get_label()
    # a single-seed row keeps one step line per fold
    single = [run for run in load_results(board_dir).runs if run.label == "ss_loso_grid_s3"]
    alone = anytime_plot(single, {"ss_loso_grid_s3": "tab:red"})
    assert alone.marks == {} and len([line for line in alone.figure.axes[0].lines if line.get_marker() == "o"]) == 2


def test_check_html_counts_the_band_and_mean_marks(board_dir):
    html = render_html(make_board(board_dir))
    rows = build_rows(load_results(board_dir).runs)
    seeded = sum(len(row.runs) > 1 for row in rows)
    assert seeded == 5
    figure = extract_figure(html, "anytime")
    assert f'data-marks="band={seeded} mean={seeded}"' in figure
    assert check_html(html) == []
    assert check_html(html.replace(group(figure, "fig-anytime-band-2"), "")) == \
        [f"figure anytime: {seeded - 1} band mark(s) drawn, {seeded} declared"]
    assert check_html(html.replace(group(figure, "fig-anytime-mean-0"), "")) == \
        [f"figure anytime: {seeded - 1} mean mark(s) drawn, {seeded} declared"]


def group(svg: str, gid: str) -> str:
    """The ``<g id="gid">`` element, nested groups and all."""
    start = svg.index(f'<g id="{gid}">')
    depth, position = 0, start
    for match in re.finditer(r"<g\b|</g>", svg[start:]):
        depth += 1 if match.group(0) == "<g" else -1
        position = start + match.end()
        if depth == 0:
            break
    return svg[start:position]
