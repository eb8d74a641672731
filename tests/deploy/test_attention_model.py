"""A real study with ``pooling: attention`` end to end (the smoke job: 2 trials on 35 EmoDB
utterances, whisper-tiny.en, the encoder frozen; and one whose encoder fine-tunes): the
trials run, the saved model holds the trained attention, and ``serbench predict`` on the
saved model scores the test split exactly as the study did."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from conftest import SMOKE_JOB
from recorded import assert_predicts_as_recorded, run_study

POOL = {"pool.project.weight", "pool.project.bias", "pool.score.weight"}


def attention_job(name: str, **search) -> dict:
    job = copy.deepcopy(SMOKE_JOB)
    job["name"] = name
    job["backbone"]["options"] = {"layers": "mean", "pooling": "attention"}
    job["search_space"].update(search)
    return job


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """The smoke job as it is (unfreeze 2..3 > epochs 1..2: the encoder never trains)."""
    return run_study(attention_job("attention_frozen"), tmp_path_factory.mktemp("attention-frozen"))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The whole encoder trains from epoch 1 on (the statistics refitted per epoch)."""
    job = attention_job(
        "attention_tuned",
        epochs={"type": "choice", "values": [2]},
        unfreeze={"type": "choice", "values": [1]},
        maxlen={"type": "choice", "values": [16000]},
    )
    job["budget"]["trials"] = 1
    return run_study(job, tmp_path_factory.mktemp("attention-tuned"))


@pytest.fixture(scope="module")
def studies(frozen, tuned) -> dict:
    """Both by name (module fixtures, so no study runs while a test's ``cli`` captures)."""
    return {"frozen": frozen, "tuned": tuned}


def stored(folder: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(folder / "model" / "weights.safetensors"), framework="pt") as f:
        return {name: f.get_tensor(name) for name in f.keys()}


def test_a_study_with_attention_pooling_runs_and_saves_the_trained_attention(frozen):
    folder, result = frozen
    assert result["status"] == "completed"
    assert [t["status"] for t in result["trials"]] == ["ok", "ok"]
    assert result["spec"]["backbone"]["options"]["pooling"] == "attention"
    weights = stored(folder)
    assert POOL <= set(weights)
    assert not any(name.startswith("encoder.") for name in weights)  # frozen: head only
    assert weights["pool.score.weight"].abs().sum() > 0  # trained away from the zero start (the mean)


@pytest.mark.parametrize("study", ["frozen", "tuned"])
def test_the_saved_attention_model_predicts_as_the_study_scored(studies, cli, study):
    folder, result = studies[study]
    assert_predicts_as_recorded(cli, folder, result["test"], Path(result["data"]["root"]))
    if study == "tuned":
        weights = stored(folder)
        assert POOL <= set(weights) and any(name.startswith("encoder.layers.") for name in weights)
