"""A small checkpoint laid out exactly like speechbrain/emotion-recognition-wav2vec2-IEMOCAP
(random weights, a tiny wav2vec2 config), for the speechbrain-wav2vec2 tests: the
``speechbrain_checkpoint`` fixture (tests/backbones/conftest.py) writes one per session."""

from pathlib import Path

import torch

# The published hyperparams.yaml, with encoder_dim 32 for the tiny encoder. Its hub
# references stay as published: the loader must redirect them to the folder.
HYPERPARAMS = """\
# Hparams NEEDED
HPARAMS_NEEDED: ["encoder_dim", "out_n_neurons", "label_encoder", "softmax"]
# Modules Needed
MODULES_NEEDED: ["wav2vec2", "avg_pool", "output_mlp"]

# Feature parameters
wav2vec2_hub: facebook/wav2vec2-base

# Pretrain folder (HuggingFace)
pretrained_path: speechbrain/emotion-recognition-wav2vec2-IEMOCAP

# parameters
encoder_dim: 32
out_n_neurons: 4

wav2vec2: !new:speechbrain.lobes.models.huggingface_transformers.wav2vec2.Wav2Vec2
    source: !ref <wav2vec2_hub>
    output_norm: True
    freeze: True
    save_path: wav2vec2_checkpoints

avg_pool: !new:speechbrain.nnet.pooling.StatisticsPooling
    return_std: False

output_mlp: !new:speechbrain.nnet.linear.Linear
    input_size: !ref <encoder_dim>
    n_neurons: !ref <out_n_neurons>
    bias: False

model: !new:torch.nn.ModuleList
    - [!ref <output_mlp>]

modules:
    wav2vec2: !ref <wav2vec2>
    output_mlp: !ref <output_mlp>
    avg_pool: !ref <avg_pool>

softmax: !new:speechbrain.nnet.activations.Softmax

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        wav2vec2: !ref <wav2vec2>
        model: !ref <model>
        label_encoder: !ref <label_encoder>
    paths:
        wav2vec2: !ref <pretrained_path>/wav2vec2.ckpt
        model: !ref <pretrained_path>/model.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""

LABEL_ENCODER = "'neu' => 0\n'ang' => 1\n'hap' => 2\n'sad' => 3\n================\n'starting_index' => 0\n"


def tiny_config():
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 8, 8),  # 320 samples per frame, as wav2vec2-base
        conv_bias=False,
        feat_extract_norm="group",  # as wav2vec2-base: GroupNorm over time after the first conv
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )


def legacy_key(key):
    """wav2vec2.ckpt was saved in 2021, before torch's parametrized weight norm."""
    return key.replace("parametrizations.weight.original0", "weight_g").replace(
        "parametrizations.weight.original1", "weight_v"
    )


def write_checkpoint(folder: Path) -> Path:
    """<folder>/{hyperparams.yaml, wav2vec2.ckpt, model.ckpt, label_encoder.txt} as published,
    plus <folder>/wav2vec2-base/ (config, preprocessor config, weights) as snapshot_download
    of facebook/wav2vec2-base gives."""
    from speechbrain.nnet.linear import Linear
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    Wav2Vec2Model(tiny_config()).save_pretrained(folder / "wav2vec2-base")
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(folder / "wav2vec2-base")
    torch.manual_seed(1)  # the fine-tuned encoder differs from its hub initialisation
    fine_tuned = Wav2Vec2Model(tiny_config())
    # SpeechBrain's checkpointer saves the lobe's state_dict: the HF model sits under "model."
    torch.save({legacy_key(f"model.{k}"): v for k, v in fine_tuned.state_dict().items()}, folder / "wav2vec2.ckpt")
    torch.save(torch.nn.ModuleList([Linear(input_size=32, n_neurons=4, bias=False)]).state_dict(), folder / "model.ckpt")
    (folder / "label_encoder.txt").write_text(LABEL_ENCODER)
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS)
    return folder
