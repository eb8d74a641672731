"""The speechbrain-wav2vec2 backbone, offline, on a small checkpoint laid out exactly like
speechbrain/emotion-recognition-wav2vec2-IEMOCAP (random weights, a tiny wav2vec2 config),
loaded through the same SpeechBrain call a hub download goes through."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from serbench.data.base import Clip

from serbench.data.audio import load_audio
from serbench.errors import DataError, ModelError
from serbench.plugin.registry import registry
from serbench.data.folds import take_subset
from serbench.spec import SubsetSpec, TrainParams, parse_job
from serbench.study.study import Study
from serbench.training.fit import fit
from serbench.backbones.speechbrain_wav2vec2 import SpeechBrainWav2Vec2Backbone, SpeechBrainWav2Vec2Options
from serbench.backbones.speechbrain_wav2vec2_model import SpeechBrainWav2Vec2SER
from serbench.data.adapters.emodb import EmoDB
from speechbrain_checkpoint import legacy_key  # tests/backbones/speechbrain_checkpoint.py


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The encoder is tiny: one torch thread runs it faster than two contending ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(speechbrain_checkpoint):
    return speechbrain_checkpoint


@pytest.fixture(scope="module")
def backbone(checkpoint):
    return SpeechBrainWav2Vec2Backbone(str(checkpoint))


@pytest.fixture(scope="module")
def clips(emodb_root):
    utterances = take_subset(EmoDB().scan(emodb_root).utterances, SubsetSpec(per_class=1), seed=0)
    return [Clip(u.id, load_audio(u.path), EmoDB.classes.index(u.label)) for u in utterances]


def fresh(backbone, seed=0):
    torch.manual_seed(seed)
    return backbone.build(7)


def encoder_state(model):
    return {name: p.detach().clone() for name, p in model.wav2vec2.model.named_parameters()}


def test_is_registered_with_the_paper_checkpoint_as_default():
    entry = registry().get("backbone", "speechbrain-wav2vec2")
    assert entry.cls is SpeechBrainWav2Vec2Backbone
    assert SpeechBrainWav2Vec2Backbone().source == "speechbrain/emotion-recognition-wav2vec2-IEMOCAP"


def test_loads_the_fine_tuned_encoder_from_wav2vec2_ckpt(backbone, checkpoint):
    model = fresh(backbone)
    stored = torch.load(checkpoint / "wav2vec2.ckpt")
    hub = load_file(str(checkpoint / "wav2vec2-base" / "model.safetensors"))
    loaded = model.wav2vec2.state_dict()
    assert len(loaded) == len(stored)
    for key, value in loaded.items():
        assert torch.equal(value, stored[legacy_key(key)]), key
    name = "encoder.layers.1.attention.q_proj.weight"
    assert not torch.equal(loaded[f"model.{name}"], hub[name])  # not left at the hub weights
    assert model.wav2vec2.freeze is False  # built trainable; fit() freezes per epoch


def test_the_head_has_the_jobs_classes_and_no_output_mlp(backbone, clips):
    model = fresh(backbone).eval()
    assert model.feature_dim == 32 and model.head.out_features == 7
    assert {name.split(".")[0] for name, _ in model.named_parameters()} == {"wav2vec2", "head"}  # no output_mlp
    with torch.no_grad():
        assert model([c.wave[:16000] for c in clips[:3]]).shape == (3, 7)


def test_features_are_the_lobes_output_mean_pooled(backbone, clips):
    """Alone, a clip's features are exactly SpeechBrain's forward, then the mean over time."""
    model = fresh(backbone).eval()
    wave = torch.as_tensor(clips[0].wave[:20000])[None]
    with torch.no_grad():
        expected = model.wav2vec2(wave).mean(dim=1)
        assert torch.allclose(model.encode([clips[0].wave[:20000]]), expected, atol=1e-5)


def test_batching_with_padding_gives_the_same_features_as_alone(backbone, clips):
    model = fresh(backbone).eval()
    waves = [clips[0].wave[:9000], clips[1].wave[:16000], clips[2].wave[:12345]]
    with torch.no_grad():
        alone = torch.cat([model.encode([w]) for w in waves])
        batched = model.encode(waves)
    assert torch.allclose(alone, batched, atol=1e-5)


def test_frozen_epochs_keep_the_encoder_and_unfrozen_epochs_train_it(backbone, clips):
    model = fresh(backbone)
    before = encoder_state(model)
    snapshots, freeze_flags = [], []

    def on_epoch(epoch, loss):
        snapshots.append(encoder_state(model))
        freeze_flags.append(model.wav2vec2.freeze)

    fit(model, clips, TrainParams(lr=1e-3, epochs=3, unfreeze=2, maxlen=8000, batch_size=4), seed=0, on_epoch=on_epoch)
    assert freeze_flags == [True, True, False]
    assert all(torch.equal(before[k], snapshots[1][k]) for k in before)
    changed = {k for k in before if not torch.equal(before[k], snapshots[2][k])}
    assert "encoder.layers.0.attention.q_proj.weight" in changed
    assert "feature_projection.projection.weight" in changed
    assert not any(k.startswith("feature_extractor.") for k in changed)  # the CNN stays frozen
    assert not model.encoder_pristine and model.wav2vec2.freeze  # frozen again after fit


class RequiresGradOnly(SpeechBrainWav2Vec2SER):
    """What unfreezing would be without the lobe's ``freeze`` flag."""

    def set_encoder_trainable(self, trainable):
        keep = self.wav2vec2.freeze
        super().set_encoder_trainable(trainable)
        self.wav2vec2.freeze = keep


def test_flipping_requires_grad_alone_would_not_unfreeze(backbone, clips):
    crippled = RequiresGradOnly(fresh(backbone).wav2vec2, 7)
    crippled.wav2vec2.freeze = True  # as the published hyperparams build it
    before = encoder_state(crippled)
    requires_grad = []

    def on_epoch(epoch, loss):
        requires_grad.append(all(p.requires_grad for p in crippled.encoder_parameters()))

    fit(crippled, clips, TrainParams(lr=1e-3, epochs=1, unfreeze=0, maxlen=8000, batch_size=4), seed=0, on_epoch=on_epoch)
    assert requires_grad == [True]
    assert all(torch.equal(before[k], v) for k, v in encoder_state(crippled).items())


def test_the_feature_extractor_can_be_trained_when_asked(checkpoint, clips):
    options = SpeechBrainWav2Vec2Options(freeze_feature_extractor=False)
    model = fresh(SpeechBrainWav2Vec2Backbone(str(checkpoint), options))
    assert model.fixed_parameters() == []
    before = encoder_state(model)
    fit(model, clips, TrainParams(lr=1e-3, epochs=1, unfreeze=0, maxlen=8000, batch_size=4), seed=0)
    after = encoder_state(model)
    assert not torch.equal(before["feature_extractor.conv_layers.0.conv.weight"], after["feature_extractor.conv_layers.0.conv.weight"])


def test_loading_a_local_folder_writes_nothing(checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listing = sorted(p.relative_to(checkpoint) for p in checkpoint.rglob("*"))
    SpeechBrainWav2Vec2Backbone(str(checkpoint)).build(3)
    assert sorted(p.relative_to(checkpoint) for p in checkpoint.rglob("*")) == listing
    assert list(tmp_path.iterdir()) == []


def test_the_default_hub_id_finds_a_prefetched_folder_under_serbench_models(checkpoint, tmp_path, monkeypatch):
    (tmp_path / "emotion-recognition-wav2vec2-IEMOCAP").symlink_to(checkpoint)
    monkeypatch.setenv("SERBENCH_MODELS", str(tmp_path))
    model = SpeechBrainWav2Vec2Backbone().build(3)
    stored = torch.load(checkpoint / "wav2vec2.ckpt")
    name = "model.encoder.layers.0.feed_forward.output_dense.weight"
    assert torch.equal(model.wav2vec2.state_dict()[name], stored[name])


def test_a_clip_too_short_for_the_encoder_is_a_data_error(backbone):
    import numpy as np

    with pytest.raises(DataError, match="too short"):
        fresh(backbone).encode([np.zeros(90, dtype=np.float32)])


def broken_copy(checkpoint, tmp_path, remove=None, edit=None):
    folder = tmp_path / "broken"
    shutil.copytree(checkpoint, folder)
    if remove:
        path = folder / remove
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if edit:
        edit(folder)
    return folder


def drop_encoder_layer(folder):
    state = torch.load(folder / "wav2vec2.ckpt")
    torch.save({k: v for k, v in state.items() if ".layers.1." not in k}, folder / "wav2vec2.ckpt")


@pytest.mark.parametrize(
    "remove, edit, message",
    [
        ("model.ckpt", None, "model.ckpt"),
        ("hyperparams.yaml", None, "hyperparams.yaml"),
        ("wav2vec2-base", None, "wav2vec2-base"),
        (None, drop_encoder_layer, "lacks"),
    ],
)
def test_an_unloadable_folder_is_a_one_line_model_error(checkpoint, tmp_path, remove, edit, message):
    folder = broken_copy(checkpoint, tmp_path, remove, edit)
    with pytest.raises(ModelError, match=message) as error:
        SpeechBrainWav2Vec2Backbone(str(folder)).build(7)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("source", ["someone/unknown-model", "/no/such/folder"])
def test_a_missing_source_is_a_one_line_model_error(source, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    options = SpeechBrainWav2Vec2Options(savedir=str(tmp_path / "cache"))
    with pytest.raises(ModelError, match=source) as error:
        SpeechBrainWav2Vec2Backbone(source, options).build(7)
    assert "\n" not in str(error.value)


def test_a_study_runs_end_to_end(checkpoint, job_dict, tmp_path):
    job_dict["backbone"] = {"name": "speechbrain-wav2vec2", "source": str(checkpoint)}
    job_dict["training"]["epochs"] = 1
    del job_dict["search_space"]["epochs"]
    job_dict["search_space"]["unfreeze"] = {"type": "choice", "values": [0]}  # every trial unfreezes
    job_dict["search_space"]["maxlen"] = {"type": "choice", "values": [8000]}
    job_dict["resources"]["cpus"] = 1  # a tiny model: one thread beats two
    threads = torch.get_num_threads()
    try:
        result = Study(parse_job(job_dict), tmp_path).run()
    finally:
        torch.set_num_threads(threads)  # the study sets it for the process
    assert len(result.trials) == 2 and all(t.status == "ok" for t in result.trials)
    assert 0 <= result.test.bca <= 1
    written = json.loads((tmp_path / "result.json").read_text())
    assert written["status"] == "completed"
    assert written["backbone"]["name"] == "speechbrain-wav2vec2"
