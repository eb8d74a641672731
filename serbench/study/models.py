"""The study's final models saved beside its result: ``<out>/<job>/model/`` (one fold),
or ``model/fold-NN-<test speakers>/`` per fold (LOSO), each a folder
:func:`serbench.deploy.load_model` reads (:mod:`serbench.deploy.format`).

``model.json`` is written by the driver from what it knows -- the spec, the fold, the
result -- around the weights the final training sent back.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from serbench.data.audio import SAMPLE_RATE
from serbench.data.manifest import sha256_file, shipped
from serbench.deploy.fingerprint import combined, pretrained_files
from serbench.deploy.format import ModelInfo, PretrainedInfo, Scores, TrainingInfo
from serbench.deploy.save import weights_info, write_model
from serbench.results.schema import FoldResult, Result
from serbench.spec import JobSpec
from serbench.study.inputs import Inputs, transfer_runs
from serbench.study.output import now, spec_fingerprint
from serbench.study.resolve import Plugins

if TYPE_CHECKING:
    from serbench.data.folds import Fold
    from serbench.study.fold_loop import FoldRun

MODEL_DIR = "model"


def model_folder_name(fold: "Fold", folds: int) -> str:
    """``model`` for a one-fold protocol, else ``model/fold-NN-<test speakers>``."""
    if folds == 1:
        return MODEL_DIR
    speakers = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", s) for s in fold.test_speakers) or "all"
    return f"{MODEL_DIR}/fold-{fold.index:02d}-{speakers}"


def save_models(
    spec: JobSpec, plugins: Plugins, inputs: Inputs, runs: list["FoldRun"], result: Result, out_dir: Path
) -> Result:
    """Write every fold's final model that came back with weights; ``result`` with
    ``model`` set where one was saved (per fold, and for one-fold protocols the result's)."""
    folds = inputs.data.folds
    files: dict[int, dict[str, str]] = {}  # id(backbone variant) -> its weight files' sha256
    hashes: dict[str, str] = {}
    saved: list[FoldResult] = []
    for fold, run, fold_result in zip(folds, runs, result.folds):
        if run.final is None or run.final.weights is None or fold_result.test is None:
            saved.append(fold_result)
            continue
        name = model_folder_name(fold, len(folds))
        pretrained = _pretrained(inputs, spec.backbone_overrides(fold_result.final_params or {}), files)
        info = _info(spec, plugins, inputs, fold, run, fold_result, result, pretrained, hashes)
        write_model(out_dir / name, run.final.weights, info)
        saved.append(fold_result.model_copy(update={"model": name}))
    single = saved[0].model if len(saved) == 1 else None
    return result.model_copy(update={"folds": saved, "model": single})


def _pretrained(inputs: Inputs, overrides: dict, files: dict[int, dict[str, str]]) -> PretrainedInfo:
    """The pre-trained encoder a fold's final model was built on: the job's backbone with
    the fold's searched ``backbone.<option>`` values, as :func:`serbench.deploy.load_model`
    rebuilds it. ``files`` memoises each variant's weight-file hashes."""
    backbone, _ = inputs.variant(overrides)
    if id(backbone) not in files:
        files[id(backbone)] = pretrained_files(backbone)
    described = backbone.describe()
    weights = files[id(backbone)]
    return PretrainedInfo(
        name=described["name"],
        source=described["source"],
        options=described["options"],
        files=weights,
        fingerprint=combined(weights.items()),
    )


def _info(spec, plugins, inputs, fold, run, fold_result: FoldResult, result: Result, pretrained, hashes) -> ModelInfo:
    corpus = inputs.data.corpus
    selection = fold.split.selection
    for utt in selection:
        if utt.id not in hashes:
            hashes[utt.id] = sha256_file(utt.path)
    manifest = shipped(plugins.dataset.cls)
    checked = manifest is not None and all(
        (entry := manifest.get(u.id)) is not None and entry.sha256 == hashes[u.id] for u in selection
    )
    source = getattr(plugins.dataset.cls, "source", None)
    test = fold_result.test.model_dump(exclude={"predictions", "split"})
    transfer = {
        key: {"n": score.n, "bca": score.bca, "accuracy": score.accuracy}
        for (key, *_), score in zip(transfer_runs(inputs.targets), run.transfer)
    }
    best = fold_result.best
    return ModelInfo(
        created_at=now(),
        serbench={"version": result.versions.serbench, "commit": result.versions.commit, "dirty": result.versions.dirty},
        backbone=pretrained,
        classes=inputs.data.classes,
        sample_rate=SAMPLE_RATE,
        maxlen=int(fold_result.final_params["maxlen"]),
        pad=pretrained.options.get("pad"),
        weights=weights_info(run.final.weights),
        training=TrainingInfo(
            job=spec.name,
            job_fingerprint=spec_fingerprint(spec),
            seed=spec.seed,
            dataset=corpus.adapter,
            protocol=result.data.protocol,
            fold=fold.index,
            train_speakers=sorted({u.speaker for u in selection}),
            test_speakers=sorted({u.speaker for u in fold.split.test}),
            utterances=len(selection),
            audio_fingerprint=combined((u.id, hashes[u.id]) for u in selection),
            manifest=manifest.source if checked else None,
            licence=source.license if source is not None else None,
            label_map=corpus.label_map,
            params=fold_result.final_params,
            engine=spec.engine.name,
            pruner=spec.pruner.name,
            trials=sum(t.fold == fold.index for t in result.trials),
            best_trial=best.trial,
            best_val_bca=best.val_bca,
        ),
        scores=Scores(test=test, transfer=transfer),
    )
