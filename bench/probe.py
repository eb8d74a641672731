"""Which Whisper options make the best frozen features? A speaker-independent probe,
with the choice itself nested.

For each model and pad policy, every EmoDB clip (cut to ``--maxlen``) is encoded once with
``layers: weighted``, which yields the pooled vector of every hidden state; the ``last``
and ``mean`` features are taken from those (the same numbers those options compute). Two
families of heads are scored, leave-one-speaker-out over EmoDB's 10 speakers:

- ``lr_*``: StandardScaler + LogisticRegression (C = 1), as in the model folders'
  PROVENANCE.md, on ``last``, ``mean`` and ``concat`` (all hidden states side by side: a
  linear head over every layer, the most a weighted sum of layers could express);
- ``head_*``: serbench's own head trained by ``serbench.training.fit.fit`` on the frozen encoder
  (``--lr``, ``--epochs``, batch 8), for ``last``, ``mean`` and ``weighted``.

Two kinds of figures, kept apart in the output:

- ``exploratory``: each option's mean per-speaker test BCA. Reading the best option off
  this table picks it on the speakers it is reported on: it is **not** a basis for a
  default, only a view of the spread.
- ``nested``: the choice (pad x layers, per head family and model) is made inside each
  outer fold by an inner leave-one-speaker-out over that fold's nine training speakers
  (the mean inner validation BCA), the chosen option is trained on the nine and scored once
  on the held-out speaker. Reported: the mean ± sd of those outer scores, the option each
  fold chose, and how often each option was chosen. serbench's defaults rest on these
  choices (validation speakers only), never on the exploratory table.

Prints one JSON object.

    python bench/probe.py [--models whisper-tiny.en,whisper-base] [--pads none,30s]
                          [--per-class N] [--cache DIR]

``--cache DIR`` (default ``$SERBENCH_CACHE``; else a temporary folder) keeps the features,
so a rerun only trains.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="whisper-tiny.en,whisper-base")
    parser.add_argument("--pads", default="none,30s")
    parser.add_argument("--maxlen", type=int, default=160000)
    parser.add_argument("--per-class", type=int, default=0, help="stratified subset (0: all 535 clips)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)

    os.environ.setdefault("SERBENCH_DATA", str(REPO.parent / "shared" / "data"))
    os.environ.setdefault("SERBENCH_MODELS", str(REPO.parent / "shared" / "models"))
    import torch

    from serbench.data.base import Clip

    from serbench.data.audio import load_audio
    from serbench.data.folds import take_subset
    from serbench.execution.limits import configure_torch_threads
    from serbench.spec import SubsetSpec
    from serbench.data.adapters.emodb import EmoDB

    threads, _ = configure_torch_threads(64)
    utterances = EmoDB().scan(Path(os.environ["SERBENCH_DATA"]) / "emodb").utterances
    if args.per_class:
        utterances = take_subset(utterances, SubsetSpec(per_class=args.per_class), seed=0)
    clips = [Clip(u.id, load_audio(u.path), EmoDB.classes.index(u.label)) for u in utterances]
    speakers = np.array([u.speaker for u in utterances])
    scratch = tempfile.TemporaryDirectory(prefix="serbench-probe-")
    cache_dir = args.cache or Path(os.environ.get("SERBENCH_CACHE") or scratch.name)
    report = {"clips": len(clips), "speakers": len(set(speakers)), "maxlen": args.maxlen, "threads": threads,
              "head": {"lr": args.lr, "epochs": args.epochs, "batch_size": 8}, "exploratory": {}, "nested": {}}
    for model_name in args.models.split(","):
        scorers = {"lr": {}, "head": {}}  # family -> "pad=P/view" -> score(train mask, test mask)
        for pad in args.pads.split(","):
            started = time.perf_counter()
            per_layer, backbone = _features(model_name, pad, clips, args.maxlen, cache_dir)
            entry = {"encode_s": round(time.perf_counter() - started, 1)}
            for family, made in (("lr", _lr_scorers(per_layer, clips)),
                                 ("head", _head_scorers(backbone, per_layer, clips, args, torch))):
                for view, score in made.items():
                    scorers[family][f"pad={pad}/{view}"] = score
                    entry[f"{family}_{view}"] = _summary(_loso(score, speakers))
            report["exploratory"][f"{model_name}/pad={pad}"] = entry
            print(f"{model_name} pad={pad}: {entry}", file=sys.stderr)
        for family, options in scorers.items():
            report["nested"][f"{model_name}/{family}"] = _nested(options, speakers)
            print(f"{model_name} {family} nested: {report['nested'][f'{model_name}/{family}']}", file=sys.stderr)
    print(json.dumps(report, indent=1))


def _loso(score, speakers: np.ndarray) -> list[float]:
    """Per-speaker test BCA of one option: trained on the other speakers."""
    return [score(speakers != s, speakers == s) for s in sorted(set(speakers))]


def _nested(options: dict, speakers: np.ndarray) -> dict:
    """Outer leave-one-speaker-out; in each outer fold the option with the best mean inner
    leave-one-speaker-out BCA over the fold's training speakers is trained on all of them
    and scored once on the held-out speaker."""
    outer, chosen = [], {}
    for held_out in sorted(set(speakers)):
        inner_speakers = sorted(set(speakers) - {held_out})
        inner = {
            name: float(np.mean([score((speakers != held_out) & (speakers != v), speakers == v) for v in inner_speakers]))
            for name, score in options.items()
        }
        best = max(sorted(inner), key=lambda name: inner[name])  # ties: the first name
        chosen[str(held_out)] = best
        outer.append(options[best]((speakers != held_out), speakers == held_out))
    counts = {name: sum(c == name for c in chosen.values()) for name in sorted(set(chosen.values()))}
    return {**_summary(outer), "per_fold": [round(float(x), 3) for x in outer], "chosen": chosen, "chosen_counts": counts}


def _features(model_name, pad, clips, maxlen, cache_dir):
    """``(N, L+1, D)`` pooled hidden states of every clip, via a persistent cache."""
    import torch

    from serbench.training.features import FeatureCache
    from serbench.backbones.whisper import WhisperBackbone, WhisperOptions

    backbone = WhisperBackbone(model_name, WhisperOptions(layers="weighted", pad=pad))
    torch.manual_seed(0)
    model = backbone.build(7)
    model.set_encoder_trainable(False)
    cache = FeatureCache(backbone.cache_key(), folder=cache_dir, persistent=True)
    return cache.features(model, clips, maxlen).numpy(), backbone


def _views(per_layer: np.ndarray) -> dict[str, np.ndarray]:
    return {"last": per_layer[:, -1], "mean": per_layer[:, 1:].mean(axis=1), "concat": per_layer.reshape(len(per_layer), -1)}


def _lr_scorers(per_layer, clips) -> dict:
    """Per view, ``score(train, test)``: BCA on ``test`` of StandardScaler + LR fitted on ``train``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    labels = np.array([c.label for c in clips])

    def scorer(x):
        def score(train, test) -> float:
            scaler = StandardScaler().fit(x[train])
            probe = LogisticRegression(C=1.0, max_iter=3000).fit(scaler.transform(x[train]), labels[train])
            return float(balanced_accuracy_score(labels[test], probe.predict(scaler.transform(x[test]))))

        return score

    return {view: scorer(x) for view, x in _views(per_layer).items()}


def _head_scorers(backbone, per_layer, clips, args, torch) -> dict:
    """Per layers option, ``score(train, test)``: serbench's head on frozen features; the
    cache is filled from ``per_layer`` under each option's own key, so no clip is encoded
    again."""
    from serbench.results.metrics import score_predictions
    from serbench.spec import TrainParams
    from serbench.training.features import FeatureCache
    from serbench.training.fit import fit, predict
    from serbench.backbones.whisper import WhisperBackbone, WhisperOptions
    from serbench.data.adapters.emodb import EmoDB

    params = TrainParams(lr=args.lr, epochs=args.epochs, unfreeze=args.epochs, maxlen=args.maxlen, batch_size=8)
    views = {"last": per_layer[:, -1], "mean": per_layer[:, 1:].mean(axis=1), "weighted": per_layer}
    out = {}
    for layers, x in views.items():
        option = WhisperBackbone(backbone.source, WhisperOptions(layers=layers, pad=backbone.options.pad))
        option._pretrained = backbone._pretrained
        cache = FeatureCache(option.cache_key())
        torch.manual_seed(0)
        model = option.build(7)
        for clip, vector in zip(clips, x):
            cache.store.put(cache.key(model, clip, args.maxlen), torch.from_numpy(np.ascontiguousarray(vector)))

        def score(train_mask, test_mask, option=option, cache=cache) -> float:
            train = [c for c, keep in zip(clips, train_mask) if keep]
            test = [c for c, keep in zip(clips, test_mask) if keep]
            torch.manual_seed(0)
            model = option.build(7)
            fit(model, train, params, seed=0, cache=cache)
            assert cache.misses == 0
            truth = np.array([c.label for c in test])
            return score_predictions(truth, predict(model, test, args.maxlen, cache), EmoDB.classes).bca

        out[layers] = score
    return out


def _summary(scores) -> dict[str, float]:
    return {"bca": round(float(np.mean(scores)), 3), "sd": round(float(np.std(scores)), 3)}


if __name__ == "__main__":
    main()
