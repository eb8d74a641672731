"""``serbench export --format onnx`` and the onnx runtime, on models from real smoke
studies (EmoDB, whisper-tiny.en): the graph's class probabilities match PyTorch's on real
clips of several lengths, for the unpadded default, a padded policy with an integer layer
(a shallower graph), partially fine-tuned top layers with a learned layer mix, and
attentive statistics pooling over a fine-tuned encoder; and a
missing, altered or stale graph, or a backbone without ONNX support, is refused in one line."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from conftest import SMOKE_JOB, assert_one_line_error
from serbench.cli.main import main
from serbench.data.audio import load_audio
from serbench.deploy import load_model
from serbench.errors import ModelError
from serbench.spec import parse_job
from serbench.study.study import Study

TOLERANCE = 1e-4


def smoke_job(name: str, options: dict, maxlen: int, unfreeze: int, epochs: int = 2) -> dict:
    """One trial of fixed hyperparameters on 5 EmoDB utterances per class (the fewest a
    stratified holdout of 20 % test and 25 % validation splits)."""
    job = copy.deepcopy(SMOKE_JOB)
    job["name"] = name
    job["backbone"]["options"] = options
    job["search_space"] = {
        "lr": {"type": "choice", "values": [1e-3]},
        "epochs": {"type": "choice", "values": [epochs]},
        "unfreeze": {"type": "choice", "values": [unfreeze]},
        "maxlen": {"type": "choice", "values": [maxlen]},
    }
    job["budget"]["trials"] = 1
    return job


CONFIGS = {
    # unpadded, the mean of every layer, the encoder frozen (only the head is saved)
    "mean-frozen": smoke_job("mean_frozen", {"layers": "mean"}, maxlen=48000, unfreeze=2),
    # silence up to maxlen (the graph takes the frames pooled), layer 2 of 4: a shallower graph
    "maxlen-layer2": smoke_job("maxlen_layer2", {"layers": 2, "pad": "maxlen"}, maxlen=32000, unfreeze=2),
    # the top layer fine-tuned from epoch 1 on, a learned mix of every hidden state
    "weighted-top1": smoke_job("weighted_top1", {"layers": "weighted", "train_layers": 1}, maxlen=32000, unfreeze=1),
    # attentive statistics pooling of the last layer under silence up to maxlen (the graph
    # masks the silence out of the attention), the whole encoder fine-tuned from epoch 1 on
    "attention-std-maxlen": smoke_job(
        "attention_std_maxlen", {"layers": "last", "pad": "maxlen", "pooling": "attention+std"}, maxlen=32000, unfreeze=1
    ),
}


def run_cli(*args) -> tuple[int, str]:
    """``serbench`` in-process (module fixtures cannot use capsys): (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    return code, out.getvalue()


def train(job: dict, out: Path) -> Path:
    threads = torch.get_num_threads()
    try:
        Study(parse_job(job), out).run()
    finally:
        torch.set_num_threads(threads)  # the study sets it for the process
    return out


class Exports:
    """Each configuration trained and exported by the CLI once per module, on first use:
    (name, result folder, model folder, stdout, seconds); ``maxlen-layer2`` exports to
    ``--output`` outside its model folder."""

    def __init__(self, root: Path):
        self.root = root
        self.done: dict[str, tuple] = {}

    def __getitem__(self, name: str) -> tuple:
        if name not in self.done:
            out = train(CONFIGS[name], self.root / name)
            model = out / "model"
            extra = ["--output", out / "exports" / "graph.onnx"] if name == "maxlen-layer2" else []
            info_before = (model / "model.json").read_bytes()
            started = time.perf_counter()
            code, stdout = run_cli("export", out, "--format", "onnx", *extra)
            seconds = time.perf_counter() - started
            assert code == 0, stdout
            assert (model / "model.json").read_bytes() == info_before, "export must leave model.json as it was"
            self.done[name] = (name, out, model, stdout, seconds)
        return self.done[name]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Exports:
    return Exports(tmp_path_factory.mktemp("exports"))


@pytest.fixture(params=list(CONFIGS))
def exported(request, exports):
    return exports[request.param]


@pytest.fixture(scope="module")
def clips(emodb_root) -> dict[str, tuple[Path, np.ndarray]]:
    """Real EmoDB clips, path and audio: the shortest, the median and the longest of the corpus."""
    files = sorted((emodb_root / "wav").glob("*.wav"))
    assert len(files) > 500, f"EmoDB at {emodb_root} is incomplete"
    by_length = sorted(files, key=lambda f: (soundfile.info(str(f)).frames, f.name))
    picked = {"shortest": by_length[0], "median": by_length[len(by_length) // 2], "longest": by_length[-1]}
    return {name: (path, load_audio(path)) for name, path in picked.items()}


def test_onnx_probabilities_match_pytorch_on_real_clips(exported, clips):
    name, out, folder, stdout, seconds = exported
    started = time.perf_counter()
    torch_model = load_model(out)
    torch_load = time.perf_counter() - started
    started = time.perf_counter()
    onnx_model = load_model(out, runtime="onnx")
    onnx_load = time.perf_counter() - started
    assert (torch_model.runtime, onnx_model.runtime) == ("torch", "onnx")
    # The graph's inputs come from the feature extractor alone: no PyTorch model behind them.
    scorer = onnx_model.scorer
    assert not isinstance(getattr(scorer.front_end, "__self__", None), torch.nn.Module)
    assert not any(isinstance(value, torch.nn.Module) for value in vars(scorer).values())
    maxlen = torch_model.maxlen
    waves = {name: wave for name, (_, wave) in clips.items()}
    longest = waves["longest"]
    assert len(waves["shortest"]) < maxlen < 2 * maxlen < len(longest)
    waves["window"] = longest[len(longest) // 3 : len(longest) // 3 + maxlen]  # cut from the middle
    waves["0.25 s"] = waves["median"][:4000]
    reference = torch_model.scorer.probabilities(list(waves.values()))
    graph = onnx_model.scorer.probabilities(list(waves.values()))
    assert graph.shape == reference.shape == (len(waves), len(torch_model.classes))
    assert np.allclose(graph.sum(axis=1), 1, atol=1e-5)
    differences = np.abs(graph - reference).max(axis=1)
    figures = ", ".join(f"{k} ({min(len(w), maxlen)} samples) {d:.1e}" for (k, w), d in zip(waves.items(), differences))
    print(f"\n{name}: max |onnx - torch| per clip: {figures}; export {seconds:.1f} s; "
          f"load torch {torch_load:.1f} s, onnx {onnx_load:.1f} s")
    assert differences.max() <= TOLERANCE, figures
    # A whole file cut into windows, as predict_files scores it, gives the same label and probabilities.
    path = clips["longest"][0]
    [by_torch], [by_onnx] = torch_model.predict_files([path]), onnx_model.predict_files([path])
    assert len(by_onnx.windows) == len(by_torch.windows) > 2
    assert by_onnx.label == by_torch.label
    assert max(abs(by_onnx.probabilities[c] - by_torch.probabilities[c]) for c in torch_model.classes) <= TOLERANCE


def test_the_export_is_recorded_and_checked(exported):
    import onnx

    name, out, folder, stdout, _ = exported
    record = json.loads((folder / "onnx.json").read_text())
    info = json.loads((folder / "model.json").read_text())
    graph = folder / record["file"]
    assert graph.is_file() and graph.stat().st_size == record["bytes"]
    assert hashlib.sha256(graph.read_bytes()).hexdigest() == record["sha256"]
    assert record["weights_sha256"] == info["weights"]["sha256"]
    assert record["pretrained_fingerprint"] == info["backbone"]["fingerprint"]
    assert {"torch", "onnx", "onnxruntime"} <= set(record["versions"])
    assert record["parity"]["max_abs_diff"] <= record["parity"]["tolerance"] == TOLERANCE
    trained_encoder = info["weights"]["encoder"] != "none (the encoder stayed frozen)"
    assert trained_encoder == (name in ("weighted-top1", "attention-std-maxlen")), info["weights"]["encoder"]
    padded = info["backbone"]["options"]["pad"] != "none"
    assert record["inputs"] == (["mel", "pooled"] if padded else ["mel"])
    onnx.checker.check_model(str(graph), full_check=True)
    model = onnx.load(str(graph), load_external_data=False)
    assert model.opset_import[0].version == record["opset"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    # One file, the time axis dynamic, batch of one.
    mel = model.graph.input[0].type.tensor_type.shape.dim
    assert mel[0].dim_value == 1 and mel[1].dim_value == 80 and mel[2].dim_param
    layers = {i.name.split("layers.")[1].split(".")[0] for i in model.graph.initializer if "layers." in i.name}
    if name == "maxlen-layer2":
        assert graph.parent == out / "exports" and record["file"] == str(graph)
        assert layers == {"0", "1"}, "layer 2's output needs only layers 0 and 1"
    else:
        assert graph == folder / "model.onnx" and record["file"] == "model.onnx"
        assert layers == {"0", "1", "2", "3"}
    if info["backbone"]["options"]["pooling"].startswith("attention"):
        # the trained attention is in the graph (not the plain mean it started as)
        from onnx import numpy_helper

        attention = load_model(out).scorer.model.pool.project.weight.detach().numpy()
        stored = [numpy_helper.to_array(i) for i in model.graph.initializer]
        assert any(a.shape == w.shape and np.array_equal(a, w) for a in stored for w in (attention, attention.T))
    assert f"{graph}: ONNX graph (opset {record['opset']}" in stdout
    assert f"parity with PyTorch: max |difference| {record['parity']['max_abs_diff']:.2e}" in stdout


def copy_model(exported, tmp_path) -> Path:
    _, out, folder, _, _ = exported
    target = tmp_path / "model"
    shutil.copytree(folder, target)
    return target


def test_a_missing_graph_or_record_is_refused(exports, tmp_path):
    folder = copy_model(exports["mean-frozen"], tmp_path)
    (folder / "model.onnx").unlink()
    with pytest.raises(ModelError, match="model.onnx: the ONNX graph onnx.json records is missing") as error:
        load_model(folder, runtime="onnx")
    assert f"run serbench export {folder} --format onnx first" in str(error.value)
    assert "\n" not in str(error.value)
    (folder / "onnx.json").unlink()
    with pytest.raises(ModelError, match="no ONNX export here") as error:
        load_model(folder, runtime="onnx")
    assert f"run serbench export {folder} --format onnx first" in str(error.value)
    assert load_model(folder).runtime == "torch"  # the PyTorch model needs no export


def test_an_altered_graph_is_refused(exports, tmp_path):
    folder = copy_model(exports["mean-frozen"], tmp_path)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of a weight
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="the file was altered") as error:
        load_model(folder, runtime="onnx")
    assert "\n" not in str(error.value)


def test_a_graph_exported_from_other_weights_is_refused(exports, tmp_path):
    """Another model's graph and record, copied into a model folder."""
    folder = copy_model(exports["mean-frozen"], tmp_path)
    other = exports["weighted-top1"][2]
    for name in ("model.onnx", "onnx.json"):
        shutil.copy(other / name, folder / name)
    with pytest.raises(ModelError, match="exported from other weights than the model's weights.safetensors") as error:
        load_model(folder, runtime="onnx")
    assert "\n" not in str(error.value)


def test_export_of_a_backbone_without_onnx_support_is_one_line(cli, job_dict, tmp_path_factory, tmp_path):
    """speechbrain-wav2vec2 (on a tiny checkpoint laid out like the published one) has no ONNX export."""
    helper = Path(__file__).parents[1] / "backbones" / "speechbrain_checkpoint.py"
    spec = importlib.util.spec_from_file_location("speechbrain_checkpoint_for_onnx", helper)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checkpoint = module.write_checkpoint(tmp_path_factory.mktemp("sb") / "emotion-recognition-wav2vec2-IEMOCAP")
    job = smoke_job("speechbrain", {}, maxlen=8000, unfreeze=1, epochs=1)
    job["backbone"] = {"name": "speechbrain-wav2vec2", "source": str(checkpoint)}
    job["resources"]["cpus"] = 1
    out = train(job, tmp_path / "sb")
    code, _, err = cli("export", out, "--format", "onnx")
    assert_one_line_error(code, err, "has no ONNX export")
    assert not (out / "model" / "model.onnx").exists() and not (out / "model" / "onnx.json").exists()


def test_export_bad_input_is_one_line(cli, tmp_path):
    code, _, err = cli("export", tmp_path / "nowhere", "--format", "onnx")
    assert_one_line_error(code, err, "no such model or result folder")
    code, _, err = cli("export", tmp_path, "--format", "onnx")
    assert_one_line_error(code, err, "neither a model folder")
    code, _, err = cli("export", tmp_path)
    assert_one_line_error(code, err, "--format")


def test_the_probes_are_two_signals_at_least_when_maxlen_cuts_them_to_one_length():
    """A ``speaker_norm`` export traces and checks its group graphs on the probes as one
    speaker's recordings: they must be a group of two or more, whatever ``maxlen``."""
    from serbench.deploy.onnx_export import _probes

    short = _probes(3200, 16000)  # maxlen 0.2 s: under the shortest probe
    assert [len(p) for p in short] == [3200, 3200] and not np.array_equal(*short)
    assert [len(p) for p in _probes(24000, 16000)] == [4000, 16000, 24000]
