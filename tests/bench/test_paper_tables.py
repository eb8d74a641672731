"""``bench/paper_tables.py``: the plan of seed variants it runs, and the report it builds
from real results.

Real tiny studies (EmoDB subset, whisper-tiny.en frozen, two trials; about a minute on
2 CPUs) are run in-process under the names the report runs its jobs as: random and optuna
search on seeds 0 and 1, the select_on: test copy of random search on seed 0, a library
default and the levers job on seed 0, two-fold LOSO and its validation-folds twin on
seeds 0 and 1, and transfer studies on seed 0 scored on ravdess-mini zero-shot and
adapted. The report is then built from that folder with ``--from`` (no Ray), and every
figure checked against the result files, recomputed with the leaderboard's statistics.
"""

from __future__ import annotations

import copy
import json
import shutil
import statistics
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SMOKE_JOB

from serbench.leaderboard.board import OPTIMISTIC_MARK
from serbench.leaderboard.stats import bootstrap_ci, paired_test
from serbench.spec import parse_job
from serbench.study.study import Study

sys.path.insert(0, str(REPO / "bench"))
import paper_tables  # noqa: E402

HONEST = {"random_emodb_whisper": ("random", (0, 1)), "optuna_emodb_whisper": ("optuna", (0, 1))}


def _job(name: str, seed: int, engine: str, **changes) -> dict:
    job = copy.deepcopy(SMOKE_JOB)
    job.update(name=name, seed=seed, engine={"name": engine}, thresholds=[0.2, 0.5], **changes)
    return job


@pytest.fixture(scope="module")
def results(tmp_path_factory, monkeypatch_module):
    """The folder of the six real studies, named ``<group>_seed<k>``."""
    root = tmp_path_factory.mktemp("paper-results")
    monkeypatch_module.setenv("SERBENCH_CACHE", str(root / "feature-cache"))  # shared, as the script does
    jobs = [_job(f"{group}_seed{seed}", seed, engine) for group, (engine, seeds) in HONEST.items() for seed in seeds]
    jobs.append(_job("random_emodb_whisper_optimistic_seed0", 0, "random", select_on="test"))
    jobs.append(_job("optuna_default_emodb_whisper_seed0", 0, "optuna"))
    jobs[-1]["engine"]["options"] = {"n_startup_trials": 10}  # a library default: one seed only
    for name, seed, folds in (("loso_emodb_whisper_seed0", 0, 1), ("loso_cv_emodb_whisper_seed0", 0, 2),
                              ("loso_emodb_whisper_seed1", 1, 1), ("loso_cv_emodb_whisper_seed1", 1, 2)):
        jobs.append(_job(name, seed, "random", dataset={
            "name": "emodb", "subset": {"per_class": 12},
            "protocol": {"name": "loso", "folds": ["03", "08"], "val_speakers": 2, "val_folds": folds}}))
    jobs.append(_job("levers_emodb_whisper_seed0", 0, "optuna"))
    jobs[-1]["search_space"] = {**jobs[-1]["search_space"], "speaker_norm": {"type": "choice", "values": [False, True]}}
    jobs.append(_job("transfer_emodb_ravdess_seed0", 0, "random",
                     transfer=[{"name": "ravdess", "root": "ravdess-mini", "adapt": ["none", "corpus"]}]))
    jobs.append(_job("transfer_levers_emodb_ravdess_seed0", 0, "optuna",
                     transfer=[{"name": "ravdess", "root": "ravdess-mini", "adapt": ["none", "speaker"]}]))
    for job in jobs:
        Study(parse_job(job), root / job["name"]).run()
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def report(results, tmp_path_factory):
    """``(markdown, output path)`` of the report built from ``results``."""
    output = tmp_path_factory.mktemp("paper-report") / "emodb.md"
    assert paper_tables.main(["--from", str(results), "--output", str(output)]) == 0
    return output.read_text(encoding="utf-8"), output


def result(results: Path, name: str) -> dict:
    return json.loads((results / name / "result.json").read_text(encoding="utf-8"))


def section(markdown: str, title: str) -> str:
    """The text of the ``## `` section whose heading starts with ``title``."""
    part = markdown.split(f"\n## {title}", 1)[1]
    return part.split("\n## ", 1)[0]


def table_cells(text: str) -> list[list[str]]:
    """The cells of every table row of ``text``."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]


def table_row(text: str, first_cells: list[str]) -> list[str]:
    """The cells of the one table row of ``text`` that starts with ``first_cells``."""
    found = [cells for cells in table_cells(text) if cells[: len(first_cells)] == first_cells]
    assert len(found) == 1, (first_cells, found)
    return found[0]


def test_the_protocol_table_says_which_seeds_each_row_ran_and_the_memory_per_trial(results, report):
    markdown, _ = report
    cells = {row[0]: row[2] for row in table_cells(section(markdown, "How the protocols differ"))}
    # in the report's row order; the rows of one seed set together
    assert cells["seeds"].startswith("seeds 0, 1: `optuna_emodb_whisper`, `random_emodb_whisper`, `loso_emodb_whisper`, "
                                     "`loso_cv_emodb_whisper`; "
                                     "seed 0: `optuna_default_emodb_whisper`, `levers_emodb_whisper`, `transfer_emodb_ravdess`, "
                                     "`transfer_levers_emodb_ravdess`, `random_emodb_whisper_optimistic` (")
    caps = {result(results, path.parent.name)["resources"]["memory_requested_gb"]
            for path in results.glob("*/result.json")}
    assert cells["hardware"].startswith(f"one CPU and {min(caps):g}")


def test_table5_shows_the_mean_sd_and_bootstrap_interval_over_seeds(results, report):
    markdown, _ = report
    table = section(markdown, "Table 5")
    for group, (engine, seeds) in HONEST.items():
        tests = [result(results, f"{group}_seed{seed}")["test_summary"]["bca_mean"] for seed in seeds]
        interval = bootstrap_ci(tests)
        (row,) = [cells for cells in table_cells(table) if cells[1] == engine and cells[0] in ("1", "2")]
        assert row[2] == "0,1"
        assert row[5] == f"{statistics.fmean(tests):.3f} ± {statistics.pstdev(tests):.3f}"
        assert row[6] == f"[{interval.low:.3f}, {interval.high:.3f}]"
    assert OPTIMISTIC_MARK not in table and "_optimistic" not in table  # no optimistic row ranked here
    # run on seed 0 only: listed after the two-seed rows, unranked
    default = [cells for cells in table_cells(table) if cells[1].startswith("optuna (library default")]
    assert [cells[:3] for cells in default] == [["—", default[0][1], "0"]]
    assert [cells[0] for cells in table_cells(table)[2:]][:3] == ["1", "2", "—"]
    assert table_row(table, ["", "ax"])[2] == "not run"


def test_table4_lists_what_each_seed_chose_on_validation(results, report):
    markdown, _ = report
    table = section(markdown, "Table 4")
    for group, (engine, seeds) in HONEST.items():
        for seed in seeds:
            data = result(results, f"{group}_seed{seed}")
            best = data["best"]
            row = table_row(table, [engine, str(seed)])
            assert row[2] == str(best["trial"] + 1)
            assert row[3] == f"{best['params']['lr']:.2e}" and row[4] == str(best["params"]["epochs"])
            assert row[7] == f"{best['val_bca']:.3f}" and row[8] == f"{data['test']['bca']:.3f}"


def test_engines_are_compared_paired_by_seed(results, report):
    markdown, _ = report
    table = section(markdown, "Engines compared")
    values = {engine: {seed: result(results, f"{group}_seed{seed}")["test_summary"]["bca_mean"] for seed in seeds}
              for group, (engine, seeds) in HONEST.items()}
    expected = paired_test(values)
    row = table_row(table, ["optuna vs random"])
    assert row[2] == "2" and row[3] == "wilcoxon"
    if expected.p_value is not None:
        assert row[5] == f"{expected.p_value:.4g}"
    assert table_row(table, ["the five engines"])[1] == "not run"


def test_optimistic_rows_stand_apart_beside_the_honest_figure(results, report):
    markdown, _ = report
    table = section(markdown, "Optimistic rows")
    data = result(results, "random_emodb_whisper_optimistic_seed0")
    assert data["select_on"] == "test"
    row = table_row(table, ["1", f"random{OPTIMISTIC_MARK}"])
    assert row[3] == f"{data['test_summary']['bca_mean']:.3f}"
    honest0 = result(results, "random_emodb_whisper_seed0")["test_summary"]["bca_mean"]
    assert row[5] == f"{honest0:.3f} (seed 0)"  # the honest seeds the optimistic row also ran
    assert row[6] == f"{data['test_summary']['bca_mean'] - honest0:+.3f} (1 seed)"


def test_the_levers_section_lists_what_each_seed_chose_and_marks_transductive_scores(results, report):
    markdown, _ = report
    table = section(markdown, "Beyond the paper's space")
    data = result(results, "levers_emodb_whisper_seed0")
    best, test = data["best"], data["test"]
    row = table_row(table, ["0", str(best["trial"] + 1)])
    assert row[2:7] == [f"{best['params']['lr']:.2e}", str(best["params"]["epochs"]), str(best["params"]["unfreeze"]),
                        str(best["params"]["maxlen"]), str(best["params"]["speaker_norm"])]
    assert row[7] == f"{best['val_bca']:.3f}"
    assert row[8] == f"{test['bca']:.3f}" + (" (transductive)" if best["params"]["speaker_norm"] else "")
    assert test["transductive"] is best["params"]["speaker_norm"]
    # one seed shared with the two-seed engine rows: no test to run
    assert "Paired by seed with Table 5's first row" in table and "not enough paired seeds" in table


def test_the_validation_folds_twin_of_loso_is_paired_by_seed_and_test_speaker(results, report):
    markdown, _ = report
    table = section(markdown, "Speaker-independent: nested leave one speaker out, 2 validation folds per trial")
    twin, one = {}, {}
    for seed in (0, 1):
        cv, plain = (result(results, f"{group}_seed{seed}") for group in ("loso_cv_emodb_whisper", "loso_emodb_whisper"))
        assert cv["spec"]["dataset"]["protocol"]["val_folds"] == 2
        assert all(len(trial["val_folds"]) == 2 for trial in cv["trials"])
        assert [f["test_speakers"] for f in cv["folds"]] == [f["test_speakers"] for f in plain["folds"]] == [["03"], ["08"]]
        twin.update({(seed, i): fold["test"]["bca"] for i, fold in enumerate(cv["folds"])})
        one.update({(seed, i): fold["test"]["bca"] for i, fold in enumerate(plain["folds"])})
    expected = paired_test({"twin": twin, "one": one})
    line = next(line for line in table.splitlines() if line.startswith("Paired by seed and test speaker"))
    assert f"{statistics.fmean(twin[k] - one[k] for k in twin):+.3f} in test BCA" in line
    assert "(seeds 0, 1; 4 pairs)" in line
    assert (f"p = {expected.p_value:.4g}" if expected.p_value is not None else expected.note) in line


def test_a_loso_seed_shows_the_bootstrap_interval_over_its_test_speakers(results, report):
    from serbench.leaderboard.board import fmt_ci

    markdown, _ = report
    table = section(markdown, "Speaker-independent: nested leave one speaker out\n")
    data = result(results, "loso_emodb_whisper_seed0")
    row = table_row(table, ["0", str(len(data["folds"]))])
    expected = bootstrap_ci([fold["test"]["bca"] for fold in data["folds"]])
    assert expected is not None and row[3] == fmt_ci(expected)


def test_table6_counts_n_dropped_and_classes_on_one_population(results, report):
    markdown, _ = report
    table = section(markdown, "Table 6")
    data = result(results, "transfer_emodb_ravdess_seed0")
    assert set(data["transfer"]) == {"ravdess", "ravdess+adapt:corpus"}
    for key, score in data["transfer"].items():
        row = table_row(table, ["tuned (2-trial random search)", key])
        assert row[4] == str(score["n"])
        counts = dict(part.rsplit(" ", 1) for part in row[5].split(", "))
        assert sum(map(int, counts.values())) == score["n"]
        assert row[6] == ", ".join(f"{label} {count}" for label, count in score["dropped"].items())
        assert row[7] == f"{score['bca']:.3f}"
    assert table_row(table, ["untuned (defaults, no search)"])[1] == "not run"


def test_table6_has_the_levers_row_beside_the_others_with_its_emodb_test_score(results, report):
    markdown, _ = report
    table = section(markdown, "Table 6")
    data = result(results, "transfer_levers_emodb_ravdess_seed0")
    name = f"levers ({data['spec']['budget']['trials']}-trial optuna search, `{data['spec']['backbone']['source']}` frozen)"
    assert set(data["transfer"]) == {"ravdess", "ravdess+adapt:speaker"}
    for key, score in data["transfer"].items():
        row = table_row(table, [name, key])
        assert row[7] == f"{score['bca']:.3f}"
        assert row[10] == f"{data['folds'][0]['test']['bca']:.3f}"
    assert "(transductive)" in table_row(table, [name, "ravdess+adapt:speaker"])[2]
    assert "(transductive)" not in table_row(table, [name, "ravdess"])[2]


def test_raw_results_and_job_names_are_kept_without_machine_paths(results, report):
    _, output = report
    raw = output.with_suffix("")
    names = sorted(path.parent.name for path in results.glob("*/result.json"))
    assert sorted(path.parent.name for path in raw.glob("*/result.json")) == names
    kept = (raw / "random_emodb_whisper_seed0" / "result.json").read_text(encoding="utf-8")
    assert "$SERBENCH_DATA" in kept


def test_the_plan_runs_every_committed_job_once_per_seed_changing_only_name_and_seed():
    plan = paper_tables.plan_jobs((0, 3))
    assert sorted(job.name for job in plan) == sorted(f"{group}_seed{seed}" for group in paper_tables.groups()
                                                      for seed in (0, 3))
    assert [job.minutes for job in plan] == sorted((job.minutes for job in plan), reverse=True)
    for job in plan:
        committed = yaml.safe_load((REPO / "jobs" / f"{job.base}.yaml").read_text(encoding="utf-8"))
        spec = paper_tables.job_spec(job)
        changed = {key for key in {*committed, *spec} if committed.get(key) != spec.get(key)}
        expected = {"name", "seed"} if job.seed != committed["seed"] else {"name"}
        assert changed == expected | ({"select_on"} if job.optimistic else set())
        assert parse_job(spec).name == job.name


def test_a_loso_job_runs_alone_on_every_cpu_and_no_job_overlaps_it():
    plan = paper_tables.plan_jobs((0, 1), other_seeds=(0,))
    slots = paper_tables.schedule(plan, cpus=2)
    wide = [slot for slot in slots if slot.job.base in paper_tables.WIDE_JOBS]
    assert sorted(slot.job.base for slot in wide) == sorted(paper_tables.WIDE_JOBS)
    for slot in wide:
        assert slot.cpus == 2 and slot.job.minutes / 2 <= slot.core_minutes <= slot.job.minutes  # less when warm
        others = [other for other in slots if other is not slot]
        assert all(other.end <= slot.start or other.start >= slot.end for other in others), slot.job.name
    narrow = [slot for slot in slots if slot not in wide]
    assert all(slot.cpus == 1 for slot in narrow)
    # the one-CPU jobs still run two at a time: their wall clock is about half their minutes
    assert max(slot.end for slot in slots) < sum(slot.core_minutes for slot in slots) / 2 + max(
        slot.core_minutes for slot in narrow)


def test_other_seeds_apply_to_every_group_but_the_honest_engines_their_defaults_and_the_levers_job():
    plan = paper_tables.plan_jobs((0, 1, 2), other_seeds=(0,))
    seeded = {*paper_tables.ENGINE_JOBS.values(), *paper_tables.DEFAULT_JOBS, paper_tables.LEVERS_JOB}
    seeds: dict[str, set[int]] = {}
    for job in plan:
        seeds.setdefault(job.group, set()).add(job.seed)
    assert set(seeds) == set(paper_tables.groups())
    for group, used in seeds.items():
        assert used == ({0, 1, 2} if group in seeded else {0}), group


def test_quick_jobs_keep_the_space_and_cut_trials_and_data():
    for job in paper_tables.plan_jobs((0,), quick=True):
        committed = yaml.safe_load((REPO / "jobs" / f"{job.base}.yaml").read_text(encoding="utf-8"))
        spec = paper_tables.job_spec(job)
        assert spec["search_space"] == committed["search_space"]
        assert spec["budget"]["trials"] == min(committed["budget"]["trials"], paper_tables.QUICK_TRIALS)
        assert spec["dataset"]["subset"]
        parse_job(spec)


def test_only_runs_the_rows_named_and_refuses_a_row_the_report_has_not(capsys):
    chosen = "loso_emodb_whisper,ax_emodb_whisper_optimistic"
    assert paper_tables.main(["--plan", "--only", chosen, "--seeds", "0,1", "--other-seeds", "0"]) == 0
    planned = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "_seed" in line]
    assert sorted(planned) == ["ax_emodb_whisper_optimistic_seed0", "loso_emodb_whisper_seed0"]
    with pytest.raises(SystemExit) as stopped:
        paper_tables.main(["--plan", "--only", "ax_emodb"])
    assert stopped.value.code == 2
    assert "ax_emodb: not a row of the report" in capsys.readouterr().err


def test_the_plan_of_a_results_folder_estimates_only_the_jobs_not_yet_done(results, capsys):
    rows = "random_emodb_whisper,optuna_emodb_whisper"
    assert paper_tables.main(["--plan", "--results", str(results), "--only", rows, "--seeds", "0,1,2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    done = sorted(line.split()[0] for line in lines if line.split()[1:] == ["done"])
    assert done == [f"{group}_seed{seed}" for group in sorted(HONEST) for seed in (0, 1)]
    estimated = sorted(line.split()[:5:4] for line in lines if "_seed" in line and "done" not in line.split())
    # the done jobs filled the shared feature cache: the rest start warm
    assert estimated == [["optuna_emodb_whisper_seed2", "warm"], ["random_emodb_whisper_seed2", "warm"]]
    assert lines[-1].startswith("2 jobs to run")
    assert paper_tables.main(["--plan", "--results", str(results), "--only", rows, "--seeds", "0,1", "--force"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("4 jobs to run")


def test_raw_results_kept_without_their_feature_cache_do_not_warm_the_plan(results, capsys, tmp_path):
    copied = Path(shutil.copytree(results, tmp_path / "raw", ignore=shutil.ignore_patterns("feature-cache")))
    assert paper_tables.main(["--plan", "--results", str(copied), "--only", "random_emodb_whisper",
                              "--seeds", "0,1,2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:5:4] for line in lines if "_seed2" in line] == [["random_emodb_whisper_seed2", "cold"]]


def test_a_plan_run_in_parts_adds_up_its_record_and_resumes_from_the_kept_raw_results(results, tmp_path):
    results = Path(shutil.copytree(results, tmp_path / "results"))
    first = paper_tables.Runs(seconds={"random_emodb_whisper_seed0": 60.0}, ray="head", cpus=2,
                              wall_seconds=60.0, estimated_minutes=1.0)
    first.save(results)
    paper_tables.Runs(seconds={"random_emodb_whisper_seed1": 30.0}, ray="head", cpus=2, wall_seconds=30.0,
                      estimated_minutes=0.5).save(results)
    record = paper_tables.Runs.load(results)
    assert record.seconds == {"random_emodb_whisper_seed0": 60.0, "random_emodb_whisper_seed1": 30.0}
    assert (record.wall_seconds, record.estimated_minutes, record.parts) == (90.0, 1.5, 2)

    raw = tmp_path / "raw"
    paper_tables.keep_raw(results, paper_tables.read_report(results), raw)
    assert paper_tables.Runs.load(raw) == record
    # the kept folder as a results folder: its finished jobs are not run again
    plan = [job for job in paper_tables.plan_jobs((0, 1)) if job.group == "random_emodb_whisper"]
    args = paper_tables.parse_args(["--results", str(raw)])
    assert paper_tables.run_jobs(raw, plan, args, cpus=2) == record
