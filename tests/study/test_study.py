"""A real study end to end: YAML job -> trials.jsonl + schema-valid result.json."""

import io
import json

import jsonschema
import pytest
from rich.console import Console

from serbench import hookimpl
from serbench.cli.console import print_summary
from serbench.engines.base import Engine, NotReady, Outcome
from serbench.errors import PluginError
from serbench.plugin.registry import Registry, load_plugins
from serbench.results.journal import TrialJournal
from serbench.results.schema import result_schema
from serbench.spec import Budget, FloatParam, parse_job
from serbench.study.events import Stage, StudyEvents
from serbench.study.search import FoldSearch
from conftest import run_search
from serbench.study.study import Study


def read_result(out, job):
    return json.loads((out / job / "result.json").read_text())


def test_smoke_job_writes_a_schema_valid_result(cli, job_dict, write_job, tmp_path):
    code, out, err = cli("run", write_job(job_dict), "--out", tmp_path)
    assert code == 0, err
    result = read_result(tmp_path, "test_job")
    jsonschema.validate(result, result_schema())
    assert result["status"] == "completed"
    assert len(result["trials"]) == 2
    journal = [json.loads(line) for line in (tmp_path / "test_job" / "trials.jsonl").read_text().splitlines()]
    assert [t["number"] for t in journal] == [0, 1]
    assert journal == result["trials"]
    assert result["folds"][0]["sizes"] == {"train": 21, "val": 7, "test": 7}
    assert result["data"]["utterances"] == 35 and result["data"]["dropped"] == {}
    assert result["test_summary"]["bca_mean"] == result["test"]["bca"]
    assert result["test"]["n"] == 7
    assert 0 <= result["test"]["bca"] <= 1
    assert sum(map(sum, result["test"]["confusion_matrix"])) == 7
    assert result["best"]["val_bca"] == max(t["value"] for t in result["trials"])
    assert result["resources"]["torch_threads"] >= 1
    assert result["versions"]["plugins"]["engine"] == {"name": "random", "package": "serbench", "version": result["versions"]["serbench"]}
    assert [h["threshold"] for h in result["thresholds"]] == [0.8, 0.9]
    # Loading is timed apart from the study: neither is part of the search or the wall of trials.
    assert result["data"]["load_seconds"] > 0 and result["model_load_seconds"] > 0
    assert result["search_seconds"] + result["final_seconds"] <= result["wall_seconds"]
    assert "result.json" in out


def test_same_job_same_trials(job_dict, tmp_path):
    job_dict["search_space"]["unfreeze"] = {"type": "int", "low": 0, "high": 2}
    job_dict["budget"]["trials"] = 2
    spec = parse_job(job_dict)
    first = Study(spec, tmp_path / "a").run()
    second = Study(spec, tmp_path / "b").run()
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.value for t in first.trials] == [t.value for t in second.trials]
    assert first.test == second.test


class StageSpy(StudyEvents):
    """Remembers which kind of training run is going on, and every one that started."""

    def __init__(self):
        self.stage = None
        self.runs = []

    def training_started(self, stage, trial, params, epochs):
        self.stage = stage
        self.runs.append((stage, trial))


def test_the_test_split_is_never_used_for_selection(job_dict, tmp_path, monkeypatch):
    """Every clip trained or predicted on, by the stage of the training run it was seen in."""
    from serbench.training import fit as fitting

    events = StageSpy()
    seen = {Stage.TRIAL: set(), Stage.FINAL: set()}

    def spy(real):
        def call(model, clips, *args, **kwargs):
            seen[events.stage].update(c.id for c in clips)
            return real(model, clips, *args, **kwargs)

        return call

    monkeypatch.setattr(fitting, "fit", spy(fitting.fit))
    monkeypatch.setattr(fitting, "logits_of", spy(fitting.logits_of))  # validation and test scoring both go through it
    study = Study(parse_job(job_dict), tmp_path, events=events)
    result = study.run()
    assert events.runs == [(Stage.TRIAL, 0), (Stage.TRIAL, 1), (Stage.FINAL, result.best.trial)]
    split = study.prepared.inputs.data.folds[0].split
    test_ids = {u.id for u in split.test}
    assert seen[Stage.TRIAL] == {u.id for u in split.train + split.val}
    assert not seen[Stage.TRIAL] & test_ids
    assert test_ids <= seen[Stage.FINAL]


def test_wall_clock_budget_stops_the_study(cli, job_dict, write_job, tmp_path):
    job_dict["budget"] = {"trials": 50, "wall_minutes": 0.0001}
    code, _, err = cli("run", write_job(job_dict), "--out", tmp_path)
    assert code == 0, err
    result = read_result(tmp_path, "test_job")
    assert result["stopped_by"] == "wall_minutes"
    assert len(result["trials"]) == 1


def test_earlier_results_are_not_overwritten_without_force(cli, job_dict, write_job, tmp_path):
    job = write_job(job_dict)
    assert cli("run", job, "--out", tmp_path)[0] == 0
    before = (tmp_path / "test_job" / "result.json").read_text()
    code, _, err = cli("run", job, "--out", tmp_path)
    assert code == 2 and "--force" in err
    assert (tmp_path / "test_job" / "result.json").read_text() == before
    assert cli("run", job, "--out", tmp_path, "--force")[0] == 0


class Broken(Engine):
    """Asks for a learning rate the trainer refuses on every other trial."""

    name = "broken-test-engine"

    made: list["Broken"] = []  # every instance, latest last

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.told = []
        Broken.made.append(self)

    def ask(self, number):
        return {"lr": -1.0 if number % 2 == 0 else 1e-3}

    def tell(self, number, outcome: Outcome):
        self.told.append((number, outcome))


class BrokenPlugin:
    @hookimpl
    def serbench_engines(self):
        return [Broken]


def test_failed_trials_are_recorded_told_and_the_study_goes_on(job_dict, tmp_path):
    pm, provenance = load_plugins()
    pm.register(BrokenPlugin(), name="broken")
    job_dict["engine"] = {"name": "broken-test-engine"}
    job_dict["search_space"] = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    job_dict["budget"]["trials"] = 3
    result = Study(parse_job(job_dict), tmp_path, reg=Registry(pm, provenance)).run()
    assert [t.status for t in result.trials] == ["failed", "ok", "failed"]
    assert result.trials[0].reason == "error" and "lr" in result.trials[0].error
    assert result.trials[0].value is None
    told = Broken.made[-1].told
    assert [o.status for _, o in told] == ["failed", "ok", "failed"]
    assert told[1][1].value == result.trials[1].value
    assert result.best.trial == 1
    assert result.versions.plugins["engine"].package == BrokenPlugin.__module__.split(".")[0]


@pytest.mark.parametrize("field", ["job", "schema"])
def test_schema_commands_print_json_schema(cli, field):
    code, out, _ = cli("schema", field if field == "job" else "result")
    assert code == 0
    schema = json.loads(out)
    assert schema["type"] == "object" and "properties" in schema


def test_loso_study_reports_folds_mean_and_sd(job_dict, tmp_path):
    job_dict["dataset"] = {
        "name": "emodb",
        "protocol": {"name": "loso", "val_speakers": 2, "folds": ["03", "08"]},
        "subset": {"speakers": ["03", "08", "09", "10", "11"], "per_class": 30},
    }
    job_dict["budget"]["trials"] = 1
    result = Study(parse_job(job_dict), tmp_path).run()
    assert [f.test_speakers for f in result.folds] == [["03"], ["08"]]
    assert result.best is None and result.test is None
    summary = result.test_summary
    assert summary.n_folds == 2
    assert summary.bca_per_fold == [f.test.bca for f in result.folds]
    assert summary.bca_mean == pytest.approx(sum(summary.bca_per_fold) / 2)
    assert summary.bca_sd == pytest.approx(abs(summary.bca_per_fold[0] - summary.bca_per_fold[1]) / 2)
    assert [t.fold for t in result.trials] == [0, 1]
    for fold in result.folds:
        assert fold.speakers == {"train": 2, "val": 2, "test": 1}
        assert fold.test.n == fold.sizes["test"]
        # A fold's BCA is over the classes its test speaker has: EmoDB's speaker 08 has no disgust.
        assert list(fold.test.per_class_recall) == fold.test_classes
    assert result.folds[0].test_classes == result.data.classes and len(result.data.classes) == 7
    assert result.folds[1].test_classes == [c for c in result.data.classes if c != "disgust"]
    console = Console(file=io.StringIO(), width=400)
    print_summary(result, tmp_path, console)
    summary_text = console.file.getvalue()
    assert f"03: {result.folds[0].test.bca:.3f}; 08: {result.folds[1].test.bca:.3f} (6 of 7 classes: no disgust)" in summary_text
    jsonschema.validate(result.model_dump(mode="json"), result_schema())


def test_transfer_scores_the_final_model_on_ravdess_through_the_label_map(job_dict, tmp_path):
    job_dict["budget"]["trials"] = 1
    job_dict["transfer"] = [{"name": "ravdess", "root": "ravdess-mini"}]
    result = Study(parse_job(job_dict), tmp_path).run()
    transfer = result.transfer["ravdess"]
    assert transfer.dropped == {"surprised": 4}
    assert transfer.label_map["calm"] == "neutral" and transfer.label_map["surprised"] is None
    assert transfer.n == 28  # 32 files, the 4 surprised ones dropped
    assert sum(map(sum, transfer.confusion_matrix)) == 28
    assert set(transfer.per_class_recall) == {"anger", "disgust", "fear", "happiness", "neutral", "sadness"}
    assert transfer.not_in_model == {}
    assert transfer.n + sum(transfer.dropped.values()) + len(transfer.skipped_files) == 32
    assert 0 <= transfer.bca <= 1 and transfer.bca_per_fold == [transfer.bca]
    jsonschema.validate(result.model_dump(mode="json"), result_schema())


def test_a_users_own_labelled_folders_run_as_a_corpus(job_dict, emodb_root, tmp_path):
    """The folder adapter in a real study: labels are used as they are."""
    from serbench.data.adapters.emodb import EmoDB

    corpus = tmp_path / "mine"
    for utt in EmoDB().scan(emodb_root).utterances:
        if utt.label in ("anger", "sadness", "neutral"):
            (corpus / utt.label.upper()).mkdir(parents=True, exist_ok=True)
            (corpus / utt.label.upper() / utt.path.name).write_bytes(utt.path.read_bytes())
    job_dict["dataset"] = {"name": "folder", "root": str(corpus), "subset": {"per_class": 8}}
    job_dict["budget"]["trials"] = 1
    result = Study(parse_job(job_dict), tmp_path / "out").run()
    assert result.data.classes == ["ANGER", "NEUTRAL", "SADNESS"]
    assert result.data.utterances == 24 and result.test.n == 5


class Impatient(Engine):
    """Answers trial 0, then wants to be told something first although nothing is pending."""

    name = "impatient-test-engine"
    supports_pending = True

    def ask(self, number):
        if number > 0:
            raise NotReady("tell me a result first")
        return {"lr": 1e-3}

    def tell(self, number, outcome: Outcome):
        pass


def test_not_ready_with_no_trial_pending_stops_the_search_with_a_plugin_error(tmp_path):
    """One trial at a time, nothing is pending when the loop asks: an engine raising
    NotReady then breaks its contract, and the study stops with a one-line PluginError
    (exit 2) after journalling the trials that ran."""
    space = {"lr": FloatParam(type="float", low=1e-4, high=1e-2, log=True)}
    journal = TrialJournal(tmp_path / "trials.jsonl")
    search = FoldSearch(0, Impatient(space, 0), Budget(trials=3), journal)
    with pytest.raises(PluginError, match=r"engine 'impatient-test-engine' raised NotReady for trial 1 with no trial "
                                          r"pending .*: tell me a result first$"):
        run_search(search, lambda n, p: {"status": "ok", "value": 0.5})
    assert [record.number for record in journal.read()] == [0]
