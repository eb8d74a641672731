"""The model folder a study saves (``model.json``, ``weights.safetensors``, ``README.md``)
and ``serbench.load_model``: what the weights hold for a frozen encoder and for one whose
top layer trained, faithful predictions from both, what loading refuses, the Python API
and the model card. Three small real studies, each run once."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open

from conftest import assert_one_line_error
from recorded import assert_predicts_as_recorded, run_study
from serbench.data.adapters.emodb import EmoDB
from serbench.data.audio import SAMPLE_RATE, resample
from serbench.data.folds import take_subset
from serbench.data.manifest import shipped
from serbench.deploy.format import FORMAT_VERSION, ModelInfo
from serbench.spec import SubsetSpec

PER_CLASS = 5
BASE_JOB = {
    "seed": 0,
    "dataset": {
        "name": "emodb",
        "protocol": {"name": "holdout", "test_fraction": 0.2, "val_fraction": 0.25},
        "subset": {"per_class": PER_CLASS},
    },
    "backbone": {"name": "whisper", "source": "openai/whisper-tiny.en", "options": {"layers": "mean"}},
    "training": {"batch_size": 4, "epochs": 2, "maxlen": 32000},
    "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-3, "log": True}},
    "engine": {"name": "random"},
    "budget": {"trials": 1},
    "resources": {"cpus": 2, "memory_gb": 4},
}
TOP_LAYER = "encoder.layers.3."  # whisper-tiny.en has 4 encoder layers, 0..3


def job(name: str, seed: int = 0, unfreeze: int = 2, **options) -> dict:
    spec = copy.deepcopy(BASE_JOB)
    spec["name"], spec["seed"] = name, seed
    spec["training"]["unfreeze"] = unfreeze
    spec["backbone"]["options"].update(options)
    return spec


@pytest.fixture(scope="module")
def top_layer(tmp_path_factory):
    """Whisper's top encoder layer trained in the second epoch (train_layers 1, unfreeze 1)."""
    return run_study(job("top_layer", unfreeze=1, train_layers=1), tmp_path_factory.mktemp("top"))


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """The encoder frozen throughout (unfreeze = epochs), and another seed: another subset."""
    return run_study(job("frozen", seed=1, unfreeze=2), tmp_path_factory.mktemp("frozen"))


@pytest.fixture(scope="module")
def no_model(tmp_path_factory):
    spec = job("no_model", unfreeze=1)
    spec["training"]["epochs"] = 1
    return run_study(spec, tmp_path_factory.mktemp("no-model"), "--no-model")


@pytest.fixture(scope="module")
def studies(top_layer, frozen) -> dict:
    """Both saved models by name (fixtures of the module's scope, so a study never runs
    while a test's ``cli`` is capturing)."""
    return {"top_layer": top_layer, "frozen": frozen}


@pytest.fixture
def frozen_copy(frozen, tmp_path) -> Path:
    """A copy of the frozen study's model folder, to spoil."""
    folder, _ = frozen
    return Path(shutil.copytree(folder / "model", tmp_path / "model"))


def tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {name: f.get_tensor(name) for name in f.keys()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- what the weights hold, and faithful predictions ------------------------------------------


def test_a_model_whose_top_layer_trained_stores_the_head_and_that_layer_only(top_layer, tiny_whisper):
    folder, _ = top_layer
    weights = folder / "model" / "weights.safetensors"
    stored = tensors(weights)
    pretrained = tensors(tiny_whisper / "model.safetensors")
    head = {name for name in stored if name.startswith(("norm.", "head."))}
    encoder = set(stored) - head
    assert head and encoder
    assert encoder == {n for n in pretrained if n.startswith((TOP_LAYER, "encoder.layer_norm."))}
    for name in stored:
        assert not any(f"layers.{i}." in name for i in range(3)), name
        assert "conv" not in name and "embed_positions" not in name, name
    # It is the trained layer, not the pre-trained one copied.
    assert any(not torch.equal(stored[n], pretrained[n].to(stored[n].dtype)) for n in encoder)
    # A few MB: the top layer's share of the encoder, in float32 (the shared tiny.en
    # checkpoint is float16, so a file-size ratio would understate the saving).
    numbers = sum(t.numel() for t in stored.values())
    pretrained_numbers = sum(t.numel() for t in pretrained.values())
    assert numbers < 0.25 * pretrained_numbers
    assert weights.stat().st_size < 0.25 * 4 * pretrained_numbers
    assert weights.stat().st_size < 10e6
    info = json.loads((folder / "model" / "model.json").read_text())["weights"]
    assert info == {
        "file": "weights.safetensors",
        "sha256": sha256(weights),
        "bytes": weights.stat().st_size,
        "tensors": len(stored),
        "parameters": numbers,
        "encoder": f"{len(encoder)} trained encoder tensors",
    }


def test_a_frozen_model_stores_no_encoder_tensors(frozen, tiny_whisper):
    folder, result = frozen
    assert result["final_params"]["unfreeze"] >= result["final_params"]["epochs"]
    weights = folder / "model" / "weights.safetensors"
    stored = tensors(weights)
    assert stored and all(name.startswith(("norm.", "head.")) for name in stored), sorted(stored)
    assert weights.stat().st_size < 0.01 * (tiny_whisper / "model.safetensors").stat().st_size
    info = json.loads((folder / "model" / "model.json").read_text())["weights"]
    assert info["encoder"] == "none (the encoder stayed frozen)"
    assert info["tensors"] == len(stored)


@pytest.mark.parametrize("study", ["top_layer", "frozen"])
def test_the_saved_model_predicts_its_test_split_exactly_as_the_study_scored_it(studies, cli, study):
    folder, result = studies[study]
    assert_predicts_as_recorded(cli, folder, result["test"], Path(result["data"]["root"]))


# -- what loading refuses -----------------------------------------------------------------------


def test_model_json_of_another_format_version_is_refused(frozen_copy, cli, emodb_root):
    info = json.loads((frozen_copy / "model.json").read_text())
    info["format_version"] = FORMAT_VERSION + 1
    (frozen_copy / "model.json").write_text(json.dumps(info))
    code, out, err = cli("predict", frozen_copy, emodb_root / "wav" / "03a01Fa.wav")
    assert_one_line_error(code, err, str(frozen_copy / "model.json"), f"model format version {FORMAT_VERSION + 1}")
    assert out == ""


def test_pretrained_weights_changed_since_training_are_refused(frozen, cli, emodb_root, tiny_whisper, tmp_path):
    folder, _ = frozen
    clip = emodb_root / "wav" / "03a01Fa.wav"
    source = Path(shutil.copytree(tiny_whisper, tmp_path / "whisper-tiny.en"))
    # The same files elsewhere are the same checkpoint.
    code, out, err = cli("predict", folder, clip, "--source", source, "--format", "json")
    assert code == 0, err
    assert len(json.loads(out)["files"]) == 1
    config = source / "config.json"
    config.chmod(0o644)
    config.write_bytes(config.read_bytes() + b"\n")  # harmless, but other bytes
    code, out, err = cli("predict", folder, clip, "--source", source)
    line = assert_one_line_error(code, err, "differ from those it was trained on", "config.json changed since training")
    assert "model.safetensors" not in line and "preprocessor_config.json" not in line
    assert out == ""


def test_a_missing_weight_file_is_refused(frozen_copy, cli, emodb_root):
    (frozen_copy / "weights.safetensors").unlink()
    code, out, err = cli("predict", frozen_copy, emodb_root / "wav" / "03a01Fa.wav")
    assert_one_line_error(code, err, str(frozen_copy), "weights.safetensors is missing")


def test_an_altered_weight_file_is_refused(frozen_copy, cli, emodb_root):
    weights = frozen_copy / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8] ^= 0x01  # one bit of the last tensor's numbers
    weights.write_bytes(bytes(data))
    code, out, err = cli("predict", frozen_copy, emodb_root / "wav" / "03a01Fa.wav")
    assert_one_line_error(code, err, str(weights), "altered")


def test_a_folder_that_is_no_model_is_refused(cli, emodb_root, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model\n")
    code, _, err = cli("predict", tmp_path, emodb_root / "wav" / "03a01Fa.wav")
    assert_one_line_error(code, err, str(tmp_path), "neither a model folder")
    code, _, err = cli("predict", tmp_path / "absent", emodb_root / "wav" / "03a01Fa.wav")
    assert_one_line_error(code, err, str(tmp_path / "absent"), "no such model")


def test_a_result_run_with_no_model_saved_none_and_predict_says_so(no_model, cli, emodb_root):
    folder, result = no_model
    assert result["status"] == "completed" and result["test"]["n"] > 0
    assert not (folder / "model").exists()
    assert result["model"] is None and [f["model"] for f in result["folds"]] == [None]
    code, out, err = cli("predict", folder, emodb_root / "wav" / "03a01Fa.wav")
    assert_one_line_error(code, err, str(folder), "saved no model", "--no-model")
    assert out == ""


# -- the Python API -----------------------------------------------------------------------------


def test_load_model_predicts_samples_as_it_predicts_files(top_layer, emodb_root, tmp_path):
    import serbench

    folder, result = top_layer
    model = serbench.load_model(folder)
    assert model.classes == result["data"]["classes"]
    assert model.folder == folder / "model" and model.runtime == "torch"
    # A clip shorter than maxlen, one longer (two windows), and one at 22.05 kHz in stereo.
    short, long = emodb_root / "wav" / "03a01Fa.wav", emodb_root / "wav" / "16b10Td.wav"
    samples, rate = sf.read(long, dtype="float32")
    stereo = tmp_path / "stereo-22k.wav"
    wave = resample(samples, rate, 22_050)
    sf.write(stereo, np.stack([wave, 0.5 * wave], axis=1), 22_050, subtype="FLOAT")
    by_file = model.predict_files([short, long, stereo])
    assert [len(p.windows) for p in by_file] == [1, 2, 2]
    for path, predicted in zip([short, long, stereo], by_file):
        assert predicted.error is None and predicted.path == path
        samples, rate = sf.read(path)  # the file's own rate (and channels), float64
        by_samples = model.predict(samples, rate)
        assert list(by_samples) == model.classes
        assert max(abs(by_samples[c] - predicted.probabilities[c]) for c in model.classes) <= 1e-6
        assert sum(by_samples.values()) == pytest.approx(1, abs=1e-5)


def test_load_model_is_a_lazy_attribute_of_the_package():
    code = (
        "import sys, serbench\n"
        "assert 'serbench.deploy' not in sys.modules and 'torch' not in sys.modules\n"
        "from serbench.deploy import load_model\n"
        "assert serbench.load_model is load_model\n"
        "assert 'load_model' in serbench.__all__\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- model.json and the model card ---------------------------------------------------------------


@pytest.mark.parametrize("study", ["top_layer", "frozen"])
def test_the_model_card_states_the_test_scores_and_the_corpus_licence(studies, study):
    folder, result = studies[study]
    card = (folder / "model" / "README.md").read_text()
    test = result["test"]
    assert f"balanced class accuracy (BCA) **{test['bca']:.3f}**" in card
    assert f"n = {test['n']}" in card
    assert set(test["per_class_recall"]) == set(result["data"]["classes"])
    for label, recall in test["per_class_recall"].items():
        assert f"| {label} | {recall:.3f} |" in card
    assert EmoDB.source.license in card


def test_model_json_describes_the_model_and_fingerprints_its_training_audio(top_layer, frozen, emodb_root, tiny_whisper):
    corpus = EmoDB().scan(emodb_root).utterances
    fingerprints = []
    for folder, result in (top_layer, frozen):
        info = ModelInfo.model_validate_json((folder / "model" / "model.json").read_text())
        assert info.format_version == FORMAT_VERSION
        assert info.classes == result["data"]["classes"]
        assert info.maxlen == result["final_params"]["maxlen"] and info.sample_rate == SAMPLE_RATE
        assert info.training.params == result["final_params"]
        assert info.training.seed == result["spec"]["seed"] and info.training.job == result["job"]
        assert info.scores.test["bca"] == result["test"]["bca"]
        for option, value in result["spec"]["backbone"]["options"].items():
            assert info.backbone.options[option] == value
        assert info.backbone.files == {p.name: sha256(p) for p in tiny_whisper.iterdir() if p.name in info.backbone.files}
        assert set(info.backbone.files) == {"config.json", "preprocessor_config.json", "model.safetensors"}
        # Genuine EmoDB: checked against the manifest serbench ships.
        assert info.training.manifest == shipped(EmoDB).source
        assert info.training.licence == EmoDB.source.license
        # The training audio is the seed's subset less the test split.
        subset = take_subset(corpus, SubsetSpec(per_class=PER_CLASS), info.training.seed)
        test_ids = {clip["id"] for clip in result["test"]["predictions"]}
        assert test_ids <= {u.id for u in subset}
        training = sorted((u.id, u.path) for u in subset if u.id not in test_ids)
        sizes = result["folds"][0]["sizes"]
        assert info.training.utterances == len(training) == sizes["train"] + sizes["val"]
        lines = "".join(f"{uid}\t{sha256(path)}\n" for uid, path in training)
        assert info.training.audio_fingerprint == hashlib.sha256(lines.encode()).hexdigest()
        fingerprints.append(info.training.audio_fingerprint)
    # Another seed trains on another subset: another fingerprint.
    assert fingerprints[0] != fingerprints[1]
