"""Speed benchmark: prints ONE JSON object of figures measured side by side, in one run,
on the same EmoDB clips (all 535, or a stratified subset with ``--quick``).

1. ``frozen_study``: the same 15-trial frozen-phase study (``epochs`` 1..3 and
   ``unfreeze: 6``, so the encoder stays frozen; the paper's ``lr`` and ``maxlen`` ranges;
   batch size 1; random search, one seed) run through ``serbench.study.study.Study``:
   - *seed style*: no feature cache (every utterance re-encoded every epoch) and
     ``pad: maxlen`` (fixed-length padding to the trial's ``maxlen``);
   - *serbench*: the study's feature cache and the default ``pad: none``;
   - *serbench_pad_maxlen*: the cache alone (seed-style features, cached).
   Seconds of search (the trials), ratios to seed style, best validation BCA and the
   final model's test BCA. serbench's standardisation pass (one frozen encoding of the
   training split per trial) is part of every run.
2. ``encoder``: frozen forward seconds over the clips, whole (up to 30 s), padded to 30 s
   vs unpadded (the log-mel included in both), and the ratio.
3. ``unfrozen``: one training epoch with the encoder trained (``group_by_length``), in
   seconds of audio per second, against what the machine's measured fp32 matmul rate
   allows for the encoder's forward + backward FLOPs per second of audio (counted by
   ``torch.utils.flop_counter.FlopCounterMode`` on each clip alone), and the fraction.
   ``padded_audio_s_per_s`` counts the padding the batches computed too.

    python bench/speed.py --quick          # whisper-tiny.en, 42 clips, 5 trials; under 2 minutes
    python bench/speed.py                  # whisper-tiny.en, all of EmoDB; about 27 minutes on 2 cores
    python bench/speed.py --backbone whisper-base   # about 5x the encoder cost

Data and models: ``$SERBENCH_DATA`` / ``$SERBENCH_MODELS`` (default ``../shared/data`` and
``../shared/models`` beside the checkout). Timings on a machine shared with other work
are noisy: the load average at start and end is part of the output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAXLENS = [32000, 48000, 64000, 80000, 112000, 160000]  # the paper's choices


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serbench speed benchmark (prints one JSON object)")
    parser.add_argument("--quick", action="store_true", help="a stratified subset of EmoDB and whisper-tiny.en")
    parser.add_argument("--backbone", default="whisper-tiny.en", help="a Whisper source (default whisper-tiny.en)")
    parser.add_argument("--trials", type=int, default=None, help="trials of the frozen study (15; quick: 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=6, help="subset size per class with --quick")
    parser.add_argument("--train-batch", type=int, default=4, help="batch size of the unfrozen epoch")
    args = parser.parse_args(argv)
    if args.trials is None:
        args.trials = 5 if args.quick else 15
    backbone = args.backbone

    os.environ.setdefault("SERBENCH_DATA", str(REPO.parent / "shared" / "data"))
    os.environ.setdefault("SERBENCH_MODELS", str(REPO.parent / "shared" / "models"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.pop("SERBENCH_CACHE", None)  # features from earlier runs would flatter serbench

    from serbench.execution.limits import configure_torch_threads

    started = time.perf_counter()
    threads, available = configure_torch_threads(available_cpus())
    report: dict = {
        "mode": "quick" if args.quick else "full",
        "backbone": backbone,
        "torch_threads": threads,
        "cpus_available": available.cpus,
        "load_avg_1m_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="serbench-speed-") as scratch:
        spec = frozen_study_spec(backbone, args)
        report["frozen_study"] = frozen_study(spec, Path(scratch))
        _log(started, f"frozen study: {report['frozen_study']}")
        clips = study_clips(spec, Path(scratch))
    report["clips"] = len(clips)
    report["audio_s"] = round(sum(len(c.wave) for c in clips) / 16000, 1)
    report["encoder"] = encoder_seconds(backbone, clips)
    _log(started, f"encoder: {report['encoder']}")
    report["unfrozen"] = unfrozen_throughput(backbone, clips, args.train_batch, args.seed, 8 if args.quick else 24)
    _log(started, f"unfrozen: {report['unfrozen']}")
    report["load_avg_1m_end"] = os.getloadavg()[0]
    report["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report))


def _log(started: float, message: str) -> None:
    print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


def available_cpus() -> float:
    from serbench.execution.limits import cpu_limit

    return cpu_limit().cpus


def frozen_study_spec(backbone: str, args) -> dict:
    dataset = {"name": "emodb", "protocol": {"name": "holdout", "test_fraction": 0.2, "val_fraction": 0.2}}
    if args.quick:
        dataset["subset"] = {"per_class": args.per_class}
    return {
        "name": "speed_frozen",
        "seed": args.seed,
        "dataset": dataset,
        "backbone": {"name": "whisper", "source": backbone, "options": {"layers": "mean", "pad": "none"}},
        "training": {"batch_size": 1, "unfreeze": 6},
        "search_space": {
            "lr": {"type": "float", "low": 1e-6, "high": 1e-3, "log": True},
            "epochs": {"type": "int", "low": 1, "high": 3},
            "maxlen": {"type": "choice", "values": MAXLENS},
        },
        "engine": {"name": "random"},
        "budget": {"trials": args.trials},
        "resources": {"cpus": available_cpus(), "memory_gb": 4},
    }


def frozen_study(spec_dict: dict, scratch: Path) -> dict:
    """The same study, seed style and serbench style; seconds of search and best BCAs."""
    from dataclasses import replace

    from serbench.spec import parse_job

    seed_spec = json.loads(json.dumps(spec_dict))
    seed_spec["backbone"]["options"]["pad"] = "maxlen"
    runs = {}
    # serbench_pad_maxlen: the cache alone (the seed style's features, cached).
    for style, spec in (("seed_style", seed_spec), ("serbench", spec_dict), ("serbench_pad_maxlen", seed_spec)):
        study = _study(parse_job(spec), scratch / style)
        prepared = study.prepare()
        if style == "seed_style":  # no feature cache: every utterance through the encoder, every epoch
            study.prepared = replace(prepared, inputs=replace(prepared.inputs, cache=None))
        result = study.run()
        runs[style] = (result, study.prepared.inputs.cache)
    seed, ours, cached = runs["seed_style"][0], runs["serbench"][0], runs["serbench_pad_maxlen"][0]
    cache = runs["serbench"][1]
    return {
        "trials": len(ours.trials),
        "seed": ours.spec["seed"],
        "space": {
            "lr": [1e-6, 1e-3, "log"],
            "epochs": [1, spec_dict["search_space"]["epochs"]["high"]],
            "maxlen": MAXLENS,
            "unfreeze": 6,
            "batch_size": 1,
        },
        "seed_style_s": round(seed.search_seconds, 2),
        "serbench_s": round(ours.search_seconds, 2),
        "ratio": round(seed.search_seconds / ours.search_seconds, 1),
        "seed_style_best_val_bca": round(seed.best.val_bca, 4),
        "serbench_best_val_bca": round(ours.best.val_bca, 4),
        "best_val_bca_diff": round(ours.best.val_bca - seed.best.val_bca, 4),
        "seed_style_test_bca": round(seed.test.bca, 4),
        "serbench_test_bca": round(ours.test.bca, 4),
        "seed_style_wall_s": round(seed.search_seconds + seed.final_seconds, 2),
        "serbench_wall_s": round(ours.search_seconds + ours.final_seconds, 2),
        "serbench_pad_maxlen_s": round(cached.search_seconds, 2),
        "cache_only_ratio": round(seed.search_seconds / cached.search_seconds, 1),
        "serbench_pad_maxlen_best_val_bca": round(cached.best.val_bca, 4),
        "cache_encoded": cache.misses,
        "cache_hits": cache.hits,
        "split": seed.folds[0].sizes,
    }


def _study(spec, out_dir: Path):
    from serbench.study.study import Study

    return Study(spec, out_dir)


def study_clips(spec_dict: dict, scratch: Path):
    """The clips the studies used (the same subset), for the encoder figures."""
    from serbench.spec import parse_job
    from serbench.study.inputs import load_data
    from serbench.study.resolve import resolve_plugins

    spec = parse_job(spec_dict)
    data = load_data(spec, resolve_plugins(spec), None)
    return [data.clips[u.id] for u in data.corpus.utterances]


def _build(backbone: str, **options):
    import torch

    from serbench.backbones.whisper import WhisperBackbone, WhisperOptions

    torch.manual_seed(0)
    return WhisperBackbone(backbone, WhisperOptions(**options)).build(7)


def encoder_seconds(backbone: str, clips) -> dict:
    """Frozen forward over whole clips (cut at 30 s), batched by length, two policies."""
    from serbench.training.features import encode_batched

    times = {}
    for pad in ("none", "30s"):
        model = _build(backbone, pad=pad)
        model.set_encoder_trainable(False)
        encode_batched(model, clips[:2], 480000)  # warm-up
        began = time.perf_counter()
        encode_batched(model, clips, 480000)
        times[pad] = time.perf_counter() - began
    return {
        "pad_30s_s": round(times["30s"], 2),
        "unpadded_s": round(times["none"], 2),
        "ratio": round(times["30s"] / times["none"], 1),
    }


def unfrozen_throughput(backbone: str, clips, batch_size: int, seed: int, flop_clips: int = 24) -> dict:
    """One epoch with the encoder trained from the start (``unfreeze: 0``) on ``clips``."""
    from torch.utils.flop_counter import FlopCounterMode

    from serbench.spec import TrainParams
    from serbench.training.fit import fit

    maxlen = max(MAXLENS)
    params = TrainParams(
        lr=1e-5, epochs=1, unfreeze=0, maxlen=maxlen, batch_size=batch_size, standardize=False, group_by_length=True
    )
    warm = _build(backbone)
    fit(warm, clips[: 2 * batch_size], params, seed)  # warm-up: allocator, kernels
    model = _build(backbone)
    began = time.perf_counter()
    fit(model, clips, params, seed)
    epoch_s = time.perf_counter() - began
    audio_s = sum(min(len(c.wave), maxlen) for c in clips) / 16000
    computed_s = _padded_audio_s(clips, params, seed)

    counted = _build(backbone)
    counted.set_encoder_trainable(True)
    counted.train()
    sample = clips[:: max(1, len(clips) // flop_clips)]  # each clip alone: no padding counted
    flops = 0
    for clip in sample:
        with FlopCounterMode(display=False) as counter:
            counted(([clip.wave[:maxlen]])).sum().backward()
        flops += counter.get_total_flops()
        counted.zero_grad(set_to_none=True)
    flops_per_audio_s = flops / (sum(min(len(c.wave), maxlen) for c in sample) / 16000)

    rate, peak = matmul_flops_per_s()
    limit = rate / flops_per_audio_s
    achieved = audio_s / epoch_s
    return {
        "clips": len(clips),
        "batch_size": batch_size,
        "maxlen": maxlen,
        "epoch_s": round(epoch_s, 2),
        "group_by_length": params.group_by_length,
        "audio_s_per_s": round(achieved, 2),
        "padded_audio_s_per_s": round(computed_s / epoch_s, 2),
        "gflops_per_audio_s": round(flops_per_audio_s / 1e9, 2),
        "matmul_gflops_per_s": round(rate / 1e9, 1),
        "matmul_peak_gflops_per_s": round(peak / 1e9, 1),
        "matmul_limited_audio_s_per_s": round(limit, 2),
        "fraction": round(achieved / limit, 3),
    }


def _padded_audio_s(clips, params, seed: int) -> float:
    """Seconds of audio the epoch's batches computed, padding included (the batches ``fit``
    drew: same seed, same first draw of its generator)."""
    import torch

    from serbench.training.fit import epoch_batches

    batches = epoch_batches(clips, params, torch.Generator().manual_seed(seed))
    lengths = [min(len(c.wave), params.maxlen) for c in clips]
    return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches) / 16000


def matmul_flops_per_s(n: int = 2048, repeats: int = 11) -> tuple[float, float]:
    """``(median, best)`` FLOP/s of ``repeats`` timed ``n x n`` fp32 matmuls. The median is
    the reference: on a shared machine the best catches a quiet instant that a
    seconds-long epoch does not get."""
    import statistics

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - began)
    flops = 2 * n**3
    return flops / statistics.median(times), flops / min(times)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
