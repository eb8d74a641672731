"""The leaderboard and the report on pruned studies: the pruner, pruned-trial and
epochs-spent columns, the "validation BCA per epoch" figure, pruned trials' partial scores
kept out of best-so-far lines, and results from before pruners.

Two real tiny studies (EmoDB, whisper-tiny.en): six frozen-encoder trials of 2..4 epochs
(their curves reported after every epoch), and one trial that trains its encoder after a
frozen probe (``pruner.frozen_rung``: its curve starts at epoch 0). Pruned trials are made
from the first study's ``result.json`` the way a pruner would have left them (:func:`prune`);
a result from before pruners by dropping what they added (:func:`before_pruners`).

The screenshot test needs Debian's ``chromium``; without it it fails, never skips.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re

import pytest
from conftest import SMOKE_JOB

from serbench.leaderboard.board import build_rows, load_results, make_board
from serbench.leaderboard.check import check_html, check_screenshots, declared_figures, extract_figure
from serbench.leaderboard.html import render_html
from serbench.leaderboard.plots import anytime_plot, best_so_far, curves_plot, make_plots, trials_plot
from serbench.results.schema import PruningUsed, Result, TrialRecord
from serbench.results.summary import best_trial, threshold_hits
from serbench.spec import parse_job
from serbench.study.study import Study

PRUNER = {"name": "successive-halving", "options": {"min_resource": 1, "reduction_factor": 2}}
N_PRUNED = 3


def _studies_job(name, seed, **changes):
    job = copy.deepcopy(SMOKE_JOB)
    job.update(name=name, seed=seed, thresholds=[0.1, 0.8], **changes)
    return job


@pytest.fixture(scope="session")
def studies(tmp_path_factory):
    """``{name: result.json data}`` of the two real studies (about 25 s on 2 CPUs)."""
    root = tmp_path_factory.mktemp("pruning-board")
    space = copy.deepcopy(SMOKE_JOB["search_space"])
    space.update(lr={"type": "float", "low": 1e-5, "high": 3e-3, "log": True},
                 epochs={"type": "int", "low": 2, "high": 4}, unfreeze={"type": "int", "low": 4, "high": 5})
    frozen = _studies_job("lb_curves", 3, search_space=space, budget={"trials": 6})
    probe_space = {"lr": {"type": "choice", "values": [1e-3]}, "epochs": {"type": "choice", "values": [2]},
                   "unfreeze": {"type": "choice", "values": [1]}, "maxlen": {"type": "choice", "values": [16000]}}
    probe = _studies_job("lb_probe", 4, search_space=probe_space, engine={"name": "grid"}, budget={"trials": 1},
                         pruner={"frozen_rung": True})
    out = {}
    for job in (frozen, probe):
        Study(parse_job(job), root / job["name"]).run()
        out[job["name"]] = json.loads((root / job["name"] / "result.json").read_text())
    return out


def prune(data: dict, pruner: dict, count: int = N_PRUNED, keep_best: bool = True) -> tuple[dict, list[int]]:
    """``data`` (a real one-fold result) as if ``pruner`` had stopped ``count`` of its
    trials: the lowest-scoring ones (other than the best, with ``keep_best``), the i-th
    after its (i+1)-th report (never its last). A stopped trial keeps the curve up to
    there, its value is that report's BCA, ``pruned_at`` its epoch; it trained that many
    epochs and its time shrinks in proportion, as does every later trial's study clock. The
    fold's and the result's best, thresholds, epochs spent and ``pruning`` follow from the
    trials (with ``keep_best`` the final model's test score stands: its trial is
    untouched). Returns (data, pruned numbers)."""
    data = copy.deepcopy(data)
    trials = data["trials"]
    best = data["best"]["trial"] if keep_best else None
    victims = sorted((t for t in trials if t["number"] != best and len(t["curve"]) >= 2),
                     key=lambda t: (t["value"], t["number"]))[:count]
    assert len(victims) == count, "the study has too few trials with two reports to prune"
    saved = {}
    for index, trial in enumerate(victims):
        stop = trial["curve"][min(index, len(trial["curve"]) - 2)]["epoch"]
        full = trial["epochs_trained"]
        trial["curve"] = [point for point in trial["curve"] if point["epoch"] <= stop]
        trial.update(status="pruned", value=trial["curve"][-1]["bca"], val_accuracy=None, pruned_at=stop,
                     epochs_trained=stop, epoch_losses=trial["epoch_losses"][:stop], best_epoch=None)
        shorter = trial["duration_s"] * stop / full
        saved[trial["number"]] = trial["duration_s"] - shorter
        trial["duration_s"] = shorter
    order = sorted(trials, key=lambda t: t["cumulative_s"])
    for position, trial in enumerate(order):
        trial["cumulative_s"] -= sum(saved.get(t["number"], 0.0) for t in order[: position + 1])
    records = [TrialRecord.model_validate(t) for t in trials]
    (fold,) = data["folds"]
    fold["best"] = best_trial(records).model_dump(mode="json")
    fold["thresholds"] = [hit.model_dump(mode="json") for hit in threshold_hits(records, data["spec"]["thresholds"])]
    fold["epochs_spent"] = sum(t.epochs_trained for t in records)
    fold["pruned"] = count
    fold["search_seconds"] -= sum(saved.values())
    data.update(best=fold["best"], thresholds=fold["thresholds"])
    data["spec"]["pruner"] = {**data["spec"]["pruner"], **pruner}
    options = ", ".join(f"{k}={v}" for k, v in pruner["options"].items())
    data["pruning"] = PruningUsed(
        pruner=pruner["name"], by=pruner.get("by", "serbench"), decided_by=f"serbench {pruner['name']}({options})",
        options=pruner["options"], report_every=1, frozen_rung=False, objective="last", trials=len(records),
        pruned=count, completed=sum(t.status == "ok" for t in records), epochs_spent=fold["epochs_spent"],
        probe_seconds=0.0,
    ).model_dump(mode="json")
    Result.model_validate(data)
    return data, [t["number"] for t in victims]


def before_pruners(data: dict) -> dict:
    """``data`` as a study from before pruners wrote it: no ``pruning``, no curves or
    epoch counts, no ``pruner``/``objective``/``budget.epochs`` in its spec."""
    data = copy.deepcopy(data)
    data.pop("pruning")
    for key in ("pruner", "objective"):
        data["spec"].pop(key)
    data["spec"]["budget"].pop("epochs")
    for trial in data["trials"]:
        for key in ("curve", "epochs_trained", "pruned_at", "best_epoch", "probe_s"):
            trial.pop(key)
    for fold in data["folds"]:
        fold.pop("epochs_spent")
        fold.pop("pruned")
        fold["best"].pop("epoch")
        fold["best"].pop("pruned")
    data["best"] = data["folds"][0]["best"]
    return data


def write(root, name, data):
    (root / name).mkdir(parents=True)
    (root / name / "result.json").write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture(scope="session")
def pruned(studies):
    """(the pruned result's data, the numbers of its pruned trials)."""
    return prune(studies["lb_curves"], PRUNER)


@pytest.fixture(scope="session")
def board_dir(tmp_path_factory, studies, pruned):
    """The pruned study, the probe study and the unpruned study as a result from before
    pruners (three rows)."""
    root = tmp_path_factory.mktemp("pruning-results")
    write(root, "lb_curves_pruned", dict(pruned[0], job="lb_curves_pruned"))
    write(root, "lb_probe", studies["lb_probe"])
    write(root, "lb_curves_old", dict(before_pruners(studies["lb_curves"]), job="lb_curves_old"))
    return root


@pytest.fixture(scope="session")
def html(board_dir):
    return render_html(make_board(board_dir))


def _rows(cli, root):
    code, out, err = cli("leaderboard", root, "--format", "json")
    assert code == 0, err
    return {row["job"]: row for group in json.loads(out)["groups"] for row in group["rows"]}


def test_the_study_reported_real_curves(studies):
    for trial in studies["lb_curves"]["trials"]:
        assert [p["epoch"] for p in trial["curve"]] == list(range(1, trial["params"]["epochs"] + 1))
    (probed,) = studies["lb_probe"]["trials"]
    assert probed["curve"][0]["epoch"] == 0 and probed["probe_s"] > 0 and len(probed["curve"]) == 3


def test_pruner_pruned_and_epochs_columns(cli, board_dir, pruned, studies):
    data, numbers = pruned
    rows = _rows(cli, board_dir)
    row = rows["lb_curves_pruned"]
    assert row["pruner"] == "successive-halving" and row["pruned"] == N_PRUNED and row["trials"] == 6
    spent = sum(t["epochs_trained"] for t in data["trials"])
    assert spent < sum(t["params"]["epochs"] for t in data["trials"])
    assert row["epochs_spent"] == {"mean": spent, "sd": None, "n": 1}
    probe = rows["lb_probe"]
    assert probe["pruner"] is None and probe["pruned"] == 0
    assert probe["epochs_spent"]["mean"] == studies["lb_probe"]["folds"][0]["epochs_spent"] == 2
    old = rows["lb_curves_old"]
    assert old["pruner"] is None and old["pruned"] == 0 and old["epochs_spent"] is None
    # every text format shows the same cells
    code, table, _ = cli("leaderboard", board_dir)
    md = cli("leaderboard", board_dir, "--format", "md")[1]
    line = next(line for line in table.splitlines() if "lb_curves_pruned" in line)
    assert "successive-halving" in line and f"│ {N_PRUNED}/6 " in line and f"│ {spent} " in line
    for job, cells in [("lb_curves_pruned", ("successive-halving", f"{N_PRUNED}/6", str(spent))),
                       ("lb_probe", ("—", "—", "2")), ("lb_curves_old", ("—", "—", "—"))]:
        shown = _md_cells(md, job)
        assert (shown["pruner"], shown["pruned"], shown["epochs spent"]) == cells, job
    code, out, _ = cli("leaderboard", board_dir, "--format", "csv")
    by_job = {r["job"]: r for r in csv.DictReader(io.StringIO(out))}
    assert by_job["lb_curves_pruned"]["pruner"] == "successive-halving"
    assert by_job["lb_curves_pruned"]["pruned"] == str(N_PRUNED)
    assert float(by_job["lb_curves_pruned"]["epochs_spent"]) == spent
    assert by_job["lb_curves_old"]["pruner"] == "" and by_job["lb_curves_old"]["epochs_spent"] == ""
    assert [g["heading"] for g in json.loads(cli("leaderboard", board_dir, "--format", "json", "--by", "pruner")[1])
            ["groups"]] == ["pruner: successive-halving", "pruner: —"]


def test_a_pruner_decided_by_the_engine_is_named_so(cli, tmp_path, pruned):
    data = copy.deepcopy(pruned[0])
    data["spec"]["pruner"].update(name="median", by="engine", options={})
    data["pruning"].update(pruner="median", by="engine", decided_by="optuna.pruners.MedianPruner()", options={})
    write(tmp_path, "by_engine", data)
    (row,) = _rows(cli, tmp_path).values()
    assert row["pruner"] == "engine:median"
    assert "engine:median" in cli("leaderboard", tmp_path)[1]


def test_pruner_settings_tell_rows_apart_and_old_results_join_their_reruns(tmp_path, studies, pruned):
    """Seeds share a row; a pruner (or other pruner options) is another row; a result from
    before pruners shares the row of the same spec run with no pruner."""
    new = studies["lb_curves"]
    twin = dict(pruned[0], job="lb_curves_pruned_seed9")
    twin["spec"] = dict(twin["spec"], seed=9)
    other_options = copy.deepcopy(pruned[0])
    other_options.update(job="lb_curves_rf3")
    other_options["spec"]["pruner"]["options"] = {"min_resource": 1, "reduction_factor": 3}
    for name, data in [("new", new), ("old", dict(before_pruners(new), job="lb_curves_old")),
                       ("pruned", dict(pruned[0], job="lb_curves_pruned")), ("rf3", other_options),
                       ("seed9", twin)]:
        write(tmp_path, name, data)
    rows = build_rows(load_results(tmp_path).runs)
    assert [row.jobs for row in rows] == [["lb_curves", "lb_curves_old"], ["lb_curves_pruned", "lb_curves_pruned_seed9"],
                                          ["lb_curves_rf3"]]
    joined, seeded, other = rows
    assert joined.pruner == "—" and joined.epochs_spent.n == 1  # only the new result records its epochs
    assert seeded.pruner == other.pruner == "successive-halving" and seeded.pruned == N_PRUNED


def test_a_best_that_is_a_pruned_trials_partial_score_is_marked(cli, tmp_path, studies):
    """When no trial of a search completed, its best is a pruned trial (a partial score)."""
    everything, _ = prune(studies["lb_curves"], PRUNER, count=6, keep_best=False)
    assert everything["best"]["pruned"] is True
    seeded, _ = prune(studies["lb_curves"], PRUNER)
    seeded["spec"] = dict(seeded["spec"], seed=9)
    write(tmp_path / "one", "all_pruned", dict(everything, job="all_pruned"))
    write(tmp_path / "two", "all_pruned", dict(everything, job="all_pruned"))
    write(tmp_path / "two", "seed9", dict(seeded, job="some_pruned"))
    bca = everything["best"]["val_bca"]
    assert _md_cells(cli("leaderboard", tmp_path / "one", "--format", "md")[1], "all_pruned")["best val BCA"] \
        == f"{bca:.3f} (pruned)"
    (row,) = _rows(cli, tmp_path / "one").values()
    assert row["best_val_pruned"] == 1
    md = cli("leaderboard", tmp_path / "two", "--format", "md")[1]
    assert _md_cells(md, "all_pruned, some_pruned")["best val BCA"].endswith(" (1/2 pruned)")
    (line,) = csv.DictReader(io.StringIO(cli("leaderboard", tmp_path / "two", "--format", "csv")[1]))
    assert line["best_val_pruned"] == "1"
    assert _md_cells(cli("leaderboard", tmp_path / "two", "--format", "md", "--by", "pruner")[1],
                     "all_pruned, some_pruned")["pruned"] == "4.5/6"


def test_the_curves_figure_draws_every_trial_and_pruned_ones_dashed_with_a_cross(html, pruned):
    data, numbers = pruned
    assert declared_figures(html) == ["anytime", "trials", "curves", "hparams", "confusion"]
    assert check_html(html) == []
    figure = extract_figure(html, "curves")
    assert 'data-marks="completed=4 pruned=3 stop=3"' in figure  # 3 + 1 probe trial completed
    for index in range(N_PRUNED):
        group = _group(figure, f"fig-curves-pruned-{index}")
        assert "stroke-dasharray" in group
        stop = _group(figure, f"fig-curves-stop-{index}")
        assert "<use " in stop and "stroke-dasharray" not in stop  # one × marker
    for index in range(4):
        assert "stroke-dasharray" not in _group(figure, f"fig-curves-completed-{index}")
    assert "3 pruned (dashed lines ending in a cross" in figure and "epoch 0 is the frozen probe" in figure


def test_the_check_notices_pruned_trials_not_drawn(html):
    figure = extract_figure(html, "curves")
    group = _group(figure, "fig-curves-stop-1")
    assert check_html(html.replace(group, "")) == ["figure curves: 2 stop mark(s) drawn, 3 declared"]
    assert check_html(html.replace('data-marks="completed=4 pruned=3 stop=3"', 'data-marks="completed=4 pruned=4 stop=3"')) \
        == ["figure curves: 3 pruned mark(s) drawn, 4 declared"]


def test_the_report_screenshot_shows_the_curves_figure(html, tmp_path):
    assert check_screenshots(html, tmp_path, ["curves"]) == []
    blank = html.replace(extract_figure(html, "curves"), '<figure id="fig-curves"></figure>')
    problems = check_screenshots(blank, tmp_path / "blank", ["curves"])
    assert len(problems) == 1 and problems[0].startswith("figure curves: blank on screen")


def test_curves_are_the_trials_reports_and_stop_where_the_pruner_stopped(board_dir, pruned):
    data, numbers = pruned
    runs = load_results(board_dir).runs
    run = next(r for r in runs if r.label == "lb_curves_pruned")
    plot = curves_plot([run], {run.label: "tab:blue"})
    lines = {line.get_gid(): line for line in plot.figure.axes[0].lines}
    trials = {t.number: t for t in run.result.trials}
    pruned_trials = sorted((t for t in run.result.trials if t.status == "pruned"), key=lambda t: t.number)
    assert [t.number for t in pruned_trials] == sorted(numbers)
    for index, trial in enumerate(pruned_trials):
        line, stop = lines[f"fig-curves-pruned-{index}"], lines[f"fig-curves-stop-{index}"]
        assert list(line.get_xdata()) == [p.epoch for p in trial.curve]
        assert list(line.get_ydata()) == [p.bca for p in trial.curve]
        assert line.get_linestyle() == "--" and stop.get_marker() == "x"
        assert (stop.get_xdata()[0], stop.get_ydata()[0]) == (trial.pruned_at, trial.value)
        assert trial.pruned_at < trials[trial.number].params["epochs"]
    assert plot.figure.axes[0].get_xlim()[0] > 0  # no probe: epochs start at 1
    probe = next(r for r in runs if r.label == "lb_probe")
    probed = curves_plot([probe], {probe.label: "tab:orange"})
    (line,) = probed.figure.axes[0].lines
    assert line.get_xdata()[0] == 0 and probed.figure.axes[0].get_xlim()[0] < 0
    assert "frozen probe" in probed.figure.axes[0].get_xlabel()


def test_pruned_values_never_raise_the_best_so_far_line(board_dir):
    """A pruned trial's value is a partial score: only completed trials count."""
    trial = dict(params={}, duration_s=1.0, epochs_trained=1)
    trials = [
        TrialRecord(number=0, status="ok", value=0.4, cumulative_s=60, **trial),
        TrialRecord(number=1, status="pruned", value=0.9, pruned_at=1, cumulative_s=120, **trial),
        TrialRecord(number=2, status="failed", cumulative_s=180, **trial),
        TrialRecord(number=3, status="ok", value=0.5, cumulative_s=240, **trial),
    ]
    xs, ys = best_so_far(trials)
    assert xs == [0, 1, 2, 3, 4] and math.isnan(ys[0]) and ys[1:] == [0.4, 0.4, 0.4, 0.5]
    xs, ys = best_so_far([trials[1]])  # nothing completed: no line at all
    assert math.isnan(ys[1])
    # and in the figure drawn from the pruned study: the line is the best completed value so far
    runs = load_results(board_dir).runs
    run = next(r for r in runs if r.label == "lb_curves_pruned")
    plot = anytime_plot([run], {run.label: "tab:blue"})
    (line,) = [line for line in plot.figure.axes[0].lines if line.get_label() == run.label]
    ordered = sorted(run.result.trials, key=lambda t: t.cumulative_s)
    expected = [max((t.value for t in ordered[: i + 1] if t.status == "ok"), default=math.nan)
                for i in range(len(ordered))]
    assert list(line.get_ydata())[1:] == pytest.approx(expected, nan_ok=True)
    assert "completed trials" in plot.figure.axes[0].get_ylabel()


def test_the_trials_figure_draws_pruned_trials_hollow_at_their_partial_score(board_dir):
    runs = load_results(board_dir).runs
    run = next(r for r in runs if r.label == "lb_curves_pruned")
    plot = trials_plot([run], {run.label: "tab:blue"})
    assert plot.marks == {"pruned": N_PRUNED}
    marks = [line for line in plot.figure.axes[0].lines if (line.get_gid() or "").startswith("fig-trials-pruned-")]
    pruned_trials = sorted((t for t in run.result.trials if t.status == "pruned"), key=lambda t: t.number)
    assert [(m.get_xdata()[0], m.get_ydata()[0]) for m in marks] == [(t.number, t.value) for t in pruned_trials]
    assert all(m.get_markerfacecolor() == "none" and m.get_marker() == "o" for m in marks)
    crosses = [line for line in plot.figure.axes[0].lines if line.get_marker() == "x"]
    assert crosses == []  # × is for failed trials; none failed
    assert "pruned" in plot.figure.axes[0].get_xlabel()


def test_a_result_from_before_pruners_still_renders(tmp_path, studies, cli):
    write(tmp_path, "old", before_pruners(studies["lb_curves"]))
    board = make_board(tmp_path)
    plots = make_plots(board.loaded.runs)
    assert [plot.kind for plot in plots] == ["anytime", "trials", "hparams", "confusion"]
    text = render_html(board, plots)
    assert check_html(text) == [] and 'id="fig-curves"' not in text
    (row,) = board.rows
    assert (row.pruner, row.pruned, row.epochs_spent) == ("—", 0, None)
    code, md, err = cli("leaderboard", tmp_path, "--format", "md")
    assert code == 0 and err == ""
    shown = _md_cells(md, "lb_curves")
    assert (shown["pruner"], shown["pruned"], shown["epochs spent"]) == ("—", "—", "—")
    assert shown["trials"] == "6" and shown["test BCA"] == f"{studies['lb_curves']['test']['bca']:.3f}"


def _md_cells(md: str, job: str) -> dict[str, str]:
    """The Markdown board's row of ``job``: heading -> cell."""
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| rank |"))
    row = next(line for line in lines if line.startswith("| ") and f"| {job} |" in line)

    def split(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip("|").split("|")]

    return dict(zip(split(header), split(row)))


def _group(svg: str, gid: str) -> str:
    """The ``<g id="gid">`` element (matplotlib nests no other element of that id in it)."""
    start = svg.index(f'<g id="{gid}">')
    depth, position = 0, start
    for match in re.finditer(r"<g\b|</g>", svg[start:]):
        depth += 1 if match.group(0) == "<g" else -1
        position = start + match.end()
        if depth == 0:
            break
    return svg[start:position]
