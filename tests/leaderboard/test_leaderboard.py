"""``serbench leaderboard`` and the HTML report, on results of real tiny studies (35 EmoDB
utterances, whisper-tiny.en, frozen encoder, 2 trials each): two random-search runs that
differ only in seed, and a grid run with zero-shot transfer to ravdess-mini.

The screenshot tests need Debian's ``chromium``; without it they fail, never skip.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
import statistics

import pytest
from conftest import SMOKE_JOB

from serbench.leaderboard.check import (
    check_html,
    check_screenshots,
    declared_figures,
    drop_figure,
    ink,
    screenshot,
)
from serbench.results.schema import Result
from serbench.spec import parse_job
from serbench.study.study import Study

KINDS = ["anytime", "trials", "curves", "hparams", "confusion", "transfer"]
RANDOM = ["lb_random_s0", "lb_random_s1"]
GRID = "lb_grid_s2"


def _job(name, seed, engine, transfer=False):
    job = copy.deepcopy(SMOKE_JOB)
    job.update(name=name, seed=seed, engine=engine, thresholds=[0.1, 0.8])
    if transfer:
        job["transfer"] = [{"name": "ravdess", "root": "ravdess-mini"}]
    return job


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory):
    """Three real studies (about 45 s on 2 CPUs), written as ``serbench run`` would."""
    root = tmp_path_factory.mktemp("leaderboard") / "results"
    jobs = [
        _job(RANDOM[0], 0, {"name": "random"}),
        _job(RANDOM[1], 1, {"name": "random"}),
        _job(GRID, 2, {"name": "grid", "options": {"grid_points": 2}}, transfer=True),
    ]
    for job in jobs:
        Study(parse_job(job), root / job["name"]).run()
    return root


@pytest.fixture(scope="session")
def results(results_dir):
    return {p.parent.name: Result.model_validate_json(p.read_text()) for p in results_dir.rglob("result.json")}


@pytest.fixture(scope="session")
def report(results_dir, tmp_path_factory):
    """The HTML report as the command writes it: (path, text)."""
    from serbench.cli.main import main

    path = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["leaderboard", str(results_dir), "--format", "html", "--output", str(path)]) == 0
    return path, path.read_text(encoding="utf-8")


def _board_json(cli, *args):
    code, out, err = cli("leaderboard", *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def _rows(board):
    return {row["job"]: row for group in board["groups"] for row in group["rows"]}


def test_seeds_of_one_spec_share_a_row_with_mean_sd_and_count(cli, results_dir, results):
    rows = _rows(_board_json(cli, results_dir))
    assert set(rows) == {", ".join(RANDOM), GRID}
    seeded = rows[", ".join(RANDOM)]
    tests = [results[name].test_summary.bca_mean for name in RANDOM]
    assert seeded["n_seeds"] == 2 and seeded["seeds"] == [0, 1] and seeded["jobs"] == RANDOM
    assert seeded["test_bca"]["mean"] == pytest.approx(statistics.fmean(tests))
    assert seeded["test_bca"]["sd"] == pytest.approx(statistics.pstdev(tests))
    assert seeded["best_val_bca"]["mean"] == pytest.approx(statistics.fmean(results[n].best.val_bca for n in RANDOM))
    grid = rows[GRID]
    assert grid["n_seeds"] == 1 and grid["test_bca"] == {"mean": results[GRID].test.bca, "sd": None, "n": 1}
    assert grid["engine"] == "grid" and grid["protocol"] == "holdout" and grid["dataset"] == "emodb"
    assert grid["backbone"] == "whisper:openai/whisper-tiny.en" and grid["trials"] == 2


def test_seeds_run_under_another_memory_cap_or_ray_address_share_the_row_and_other_cpus_do_not(
    cli, results_dir, tmp_path
):
    """A seed rerun another day gets another share of the machine's memory, and another Ray
    head's port: same row. A rerun on other CPUs has other minutes: a row of its own."""
    root = shutil.copytree(results_dir, tmp_path / "results")
    path = root / RANDOM[1] / "result.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    record["spec"]["resources"]["memory_gb"] = record["spec"]["resources"]["memory_gb"] + 0.5
    record["spec"]["execution"].update(backend="ray", options={"address": "127.0.0.1:41601"})
    path.write_text(json.dumps(record), encoding="utf-8")
    first = root / RANDOM[0] / "result.json"
    ran_on_ray = json.loads(first.read_text(encoding="utf-8"))
    ran_on_ray["spec"]["execution"].update(backend="ray", options={"address": "127.0.0.1:36291"})
    first.write_text(json.dumps(ran_on_ray), encoding="utf-8")
    assert ", ".join(RANDOM) in _rows(_board_json(cli, root))
    record["spec"]["resources"]["cpus"] = record["spec"]["resources"]["cpus"] + 1
    path.write_text(json.dumps(record), encoding="utf-8")
    assert set(_rows(_board_json(cli, root))) == {*RANDOM, GRID}


def test_grid_rows_show_how_much_of_the_grid_their_searches_ran(cli, results_dir, results):
    """The grid run: lr and epochs and unfreeze at 2 points each, 2 maxlen values = 16
    configurations, of which its budget ran 2; the random rows sample, and say nothing."""
    fold = results[GRID].folds[0]
    assert fold.search_space_size == 16 and fold.trials_run == len(results[GRID].trials) == 2
    assert all(f.search_space_size is None and f.trials_run == 2 for name in RANDOM for f in results[name].folds)
    rows = _rows(_board_json(cli, results_dir))
    assert (rows[GRID]["space_size"], rows[GRID]["space_trials"], rows[GRID]["space_covered"]) == (16, 2, 0.125)
    assert rows[", ".join(RANDOM)]["space_size"] is None and rows[", ".join(RANDOM)]["space_covered"] is None
    for form in ("table", "md", "html"):
        out = cli("leaderboard", results_dir, "--format", form)[1]
        assert "space covered" in out and "2/16 (13%)" in out, form
    lines = {line["job"]: line for line in csv.DictReader(io.StringIO(cli("leaderboard", results_dir, "--format", "csv")[1]))}
    assert (lines[GRID]["space_size"], float(lines[GRID]["space_covered"])) == ("16", 0.125)
    assert (lines[", ".join(RANDOM)]["space_size"], lines[", ".join(RANDOM)]["space_covered"]) == ("", "")


def test_rows_rank_by_test_then_validation_bca(cli, results_dir):
    rows = _board_json(cli, results_dir)["groups"][0]["rows"]
    keys = [(row["test_bca"]["mean"], row["best_val_bca"]["mean"]) for row in rows]
    assert keys == sorted(keys, reverse=True)
    assert [row["rank"] for row in rows] == [1, 2]


def test_columns_match_the_results(cli, results_dir, results):
    board = _board_json(cli, results_dir)
    grid, result = _rows(board)[GRID], results[GRID]
    assert board["thresholds"] == [0.1, 0.8] and board["transfer_targets"] == ["ravdess"]
    assert grid["minutes_to_best"]["mean"] == pytest.approx(result.best.minutes)
    assert grid["efficiency"]["mean"] == pytest.approx(result.best.efficiency)
    for cell, hit in zip(grid["thresholds"], result.thresholds):
        assert cell["threshold"] == hit.threshold and cell["reached"] == int(hit.reached)
        assert cell["minutes"] == hit.minutes and cell["trial"] == hit.trial
    assert grid["transfer_bca"]["ravdess"]["mean"] == pytest.approx(result.transfer["ravdess"].bca)
    assert _rows(board)[", ".join(RANDOM)]["transfer_bca"] == {}


def test_table_markdown_and_csv_show_the_same_board(cli, results_dir, results):
    code, table, err = cli("leaderboard", results_dir)
    assert code == 0 and err == ""
    grid = results[GRID]
    for text in (table, cli("leaderboard", results_dir, "--format", "md")[1]):
        assert "lb_random_s0, lb_random_s1" in text and GRID in text
        assert f"{grid.test.bca:.3f}" in text and f"{grid.transfer['ravdess'].bca:.3f}" in text
        assert "≥0.1 min (trial)" in text and "𝓔" in text
    seeded = [results[n].test_summary.bca_mean for n in RANDOM]
    assert f"{statistics.fmean(seeded):.3f} ± {statistics.pstdev(seeded):.3f}" in table
    code, out, _ = cli("leaderboard", results_dir, "--format", "csv")
    rows = {row["job"]: row for row in csv.DictReader(io.StringIO(out))}
    assert float(rows[GRID]["test_bca"]) == pytest.approx(grid.test.bca, abs=1e-6)
    assert rows["lb_random_s0, lb_random_s1"]["seeds"] == "2" and rows[GRID]["seeds"] == "1"
    assert float(rows[GRID]["transfer_ravdess_bca"]) == pytest.approx(grid.transfer["ravdess"].bca, abs=1e-6)


def test_by_groups_rows_under_headings(cli, results_dir, tmp_path):
    board = _board_json(cli, results_dir, "--by", "engine")
    assert [g["heading"] for g in board["groups"]] == ["engine: grid", "engine: random"]
    assert [[r["rank"] for r in g["rows"]] for g in board["groups"]] == [[1], [1]]
    out_file = tmp_path / "board.md"
    code, out, _ = cli("leaderboard", results_dir, "--format", "md", "--by", "engine", "--output", out_file)
    assert code == 0 and str(out_file) in out
    text = out_file.read_text()
    assert "## engine: grid" in text and "## engine: random" in text
    assert cli("leaderboard", results_dir, "--by", "colour")[0] == 2


def test_bad_result_files_are_named_and_skipped(cli, results_dir, tmp_path):
    root = tmp_path / "mixed"
    shutil.copytree(results_dir, root)
    (root / "broken").mkdir()
    (root / "broken" / "result.json").write_text("{not json")
    wrong = json.loads((root / GRID / "result.json").read_text())
    del wrong["trials"]
    (root / "wrong").mkdir()
    (root / "wrong" / "result.json").write_text(json.dumps(wrong))
    code, out, err = cli("leaderboard", root, "--format", "json")
    assert code == 0
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and all(line.startswith("serbench: warning: ") for line in warnings)
    assert "broken/result.json" in warnings[0] and "not JSON" in warnings[0]
    assert "wrong/result.json" in warnings[1] and "trials" in warnings[1]
    board = json.loads(out)
    assert len(_rows(board)) == 2 and len(board["skipped"]) == 2


def test_an_empty_folder_is_bad_input(cli, tmp_path):
    code, out, err = cli("leaderboard", tmp_path)
    assert (code, out) == (2, "") and "no result.json" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "result.json").write_text("[]")
    code, _, err = cli("leaderboard", tmp_path)
    assert code == 2 and "no valid result.json" in err
    assert cli("leaderboard", tmp_path / "missing")[0] == 2


def test_html_report_is_self_contained_with_every_plot(report, results):
    _, html = report
    assert declared_figures(html) == KINDS
    assert check_html(html) == []
    assert "http" not in html.lower() and "<script" not in html
    for name in [*RANDOM, GRID]:
        assert name in html
    grid = results[GRID]
    assert f"{grid.test.bca:.3f}" in html and f"{grid.best.val_bca:.3f}" in html
    for kind in KINDS:
        assert f'<figure id="fig-{kind}"' in html
    assert html.count("<svg") == len(KINDS) and html.count("<figcaption>") == len(KINDS)
    assert "Test confusion matrix of the top-ranked row" in html and "Zero-shot transfer" in html


def test_html_check_notices_a_missing_or_empty_plot(report):
    _, html = report
    for kind in KINDS:
        problems = check_html(drop_figure(html, kind))
        assert problems == [f'figure {kind}: missing (no <figure id="fig-{kind}">)']
    figure_start = html.index('<figure id="fig-trials"')
    svg_start = html.index("<svg", figure_start)
    svg_end = html.index("</svg>", svg_start)
    emptied = html[:svg_start] + '<svg role="img" aria-label="x"><title>x</title>' + html[svg_end:]
    assert check_html(emptied) == ["figure trials: its svg has 0 path(s), fewer than 5"]


def test_report_screenshot_shows_every_plot(report, tmp_path):
    path, html = report
    png = screenshot(path, tmp_path / "report.png", width=1400, height=4000)
    assert png.stat().st_size > 50_000
    assert ink(png) > 0.03  # the table and six figures, not a blank page
    assert check_screenshots(html, tmp_path / "figures") == []


def test_screenshot_check_fails_when_a_plot_is_missing(report, tmp_path):
    _, html = report
    problems = check_screenshots(drop_figure(html, "confusion"), tmp_path)
    assert len(problems) == 1 and problems[0].startswith("figure confusion: blank on screen")


def test_confusion_matrix_of_a_multi_seed_row_sums_its_seeds(results_dir, results):
    from serbench.leaderboard.board import build_rows, load_results
    from serbench.leaderboard.plots import confusion_plot

    row = next(r for r in build_rows(load_results(results_dir).runs) if r.jobs == RANDOM)
    plot = confusion_plot(row)
    n = sum(results[name].test.n for name in RANDOM)
    assert plot.title.startswith("Test confusion matrix of the top-ranked row: lb_random_s0, lb_random_s1")
    assert f"n={n})" in plot.title
    texts = [int(t.get_text()) for t in plot.figure.axes[0].texts]
    summed = [sum(results[name].test.confusion_matrix[i][j] for name in RANDOM)
              for i in range(7) for j in range(7)]
    assert texts == summed
