"""Searched backbone options (``search_space: {backbone.<option>: ...}``): what a spec may
search, that each trial's encoder is built with its values (a searched option scores as
the same option fixed, each configuration has its own cache), and that the saved model
is rebuilt with the fold's choice. Real EmoDB audio and Whisper tiny.en weights."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from conftest import SMOKE_JOB, assert_one_line_error
from recorded import assert_predicts_as_recorded, run_study
from serbench.training.features import namespace

SEARCHED = {
    "lr": {"type": "choice", "values": [3e-3]},
    "backbone.pooling": {"type": "choice", "values": ["mean", "mean+std"]},
    "backbone.layers": {"type": "choice", "values": ["last", "mean"]},
}


def job(name: str, space: dict, **options) -> dict:
    spec = copy.deepcopy(SMOKE_JOB)
    spec["name"] = name
    spec["training"] = {"batch_size": 4, "epochs": 3, "unfreeze": 3, "maxlen": 24000}
    spec["backbone"]["options"].update(options)
    spec["search_space"] = copy.deepcopy(space)
    spec["engine"] = {"name": "grid"}
    spec["budget"] = {"trials": 4}
    return spec


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A grid over two poolings x two layer choices, features in a persistent cache."""
    out = tmp_path_factory.mktemp("searched")
    cache = out / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SERBENCH_CACHE", str(cache))
        folder, result = run_study(job("searched", SEARCHED), out)
    return folder, result, cache


@pytest.mark.parametrize(
    ("key", "space", "needle"),
    [
        ("unknown option", {"backbone.layerz": {"type": "choice", "values": ["mean"]}}, "has no option 'layerz'"),
        ("bad value", {"backbone.pooling": {"type": "choice", "values": ["mean", "max"]}}, "value 'max' is not allowed"),
        (
            "conflicting pair",
            {
                "backbone.pooling": {"type": "choice", "values": ["mean", "attention"]},
                "backbone.layers": {"type": "choice", "values": ["mean", "weighted"]},
            },
            "'weighted'",
        ),
        ("no option named", {"backbone.": {"type": "choice", "values": ["mean"]}}, "name one backbone option"),
    ],
)
def test_a_searched_option_the_backbone_cannot_take_is_refused_before_anything_runs(
    cli, write_job, key, space, needle
):
    code, _, err = cli("validate", write_job(job("bad", space)))
    assert_one_line_error(code, err, "search_space.backbone.", needle)
    if key == "conflicting pair":
        assert "'attention'" in err and "does not combine" in err


def test_a_searched_option_the_job_also_fixes_refuses_conflicts_with_the_fixed_one(cli, write_job):
    space = {"backbone.pooling": {"type": "choice", "values": ["mean", "attention"]}}
    code, _, err = cli("validate", write_job(job("bad", space, layers="weighted")))
    assert_one_line_error(code, err, "search_space.backbone.pooling", "value 'attention'")


def test_every_configuration_is_tried_with_its_own_features(searched):
    _, result, cache = searched
    tried = {(t["params"]["backbone.pooling"], t["params"]["backbone.layers"]) for t in result["trials"]}
    assert tried == {(pooling, layers) for pooling in ("mean", "mean+std") for layers in ("last", "mean")}
    assert len({t["value"] for t in result["trials"]}) > 1  # the configurations differ
    producers = {json.loads((f / "producer.json").read_text())["producer"] for f in cache.iterdir()}
    options = {(json.loads(p)["options"]["pooling"], json.loads(p)["options"]["layers"]) for p in producers}
    assert options == tried  # one cache namespace per configuration, named after it
    assert all((cache / namespace(p)).is_dir() for p in producers)


def test_a_searched_option_scores_as_the_same_option_fixed(searched, tmp_path):
    _, result, _ = searched
    fixed_space = {"lr": SEARCHED["lr"]}
    _, fixed = run_study(job("fixed", fixed_space, pooling="mean+std", layers="last"), tmp_path)
    (trial,) = [
        t for t in result["trials"]
        if t["params"]["backbone.pooling"] == "mean+std" and t["params"]["backbone.layers"] == "last"
    ]
    assert fixed["trials"][0]["value"] == trial["value"]
    assert fixed["trials"][0]["epoch_losses"] == pytest.approx(trial["epoch_losses"], abs=1e-6)


def test_the_saved_model_is_rebuilt_with_the_chosen_options(searched, cli):
    folder, result, _ = searched
    best = result["best"]["params"]
    info = json.loads((folder / "model" / "model.json").read_text())
    assert info["backbone"]["options"]["pooling"] == best["backbone.pooling"]
    assert info["backbone"]["options"]["layers"] == best["backbone.layers"]
    assert result["final_params"]["backbone.pooling"] == best["backbone.pooling"]
    assert_predicts_as_recorded(cli, folder / "model", result["test"], Path(result["data"]["root"]))
