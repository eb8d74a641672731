"""Scores of a final model: on its test split, over folds, and on transfer targets.

BCA (balanced class accuracy) is the mean per-class recall over the classes the scored
set contains; it is what the paper reports and what the search optimises. Chance is
``1 / (classes present)``: what predicting one class for everything, or guessing, scores.
"""

from __future__ import annotations

import statistics

import numpy as np

from serbench.results.schema import ClipPrediction, Evaluation, TestSummary, TransferScore


def evaluate(
    truth: np.ndarray,
    predicted: np.ndarray,
    classes: list[str],
    split: str,
    ids: list[str] | None = None,
    probabilities: np.ndarray | None = None,
) -> Evaluation:
    """BCA, accuracy, per-class recall and confusion matrix over ``classes``; with ``ids``
    and ``probabilities`` (one row per utterance) also each utterance's prediction."""
    score = score_predictions(truth, predicted, classes)
    rows = []
    if ids is not None and probabilities is not None:
        rows = [
            ClipPrediction(id=i, label=classes[t], predicted=classes[p], probabilities=[float(x) for x in row])
            for i, t, p, row in sorted(zip(ids, truth.tolist(), predicted.tolist(), probabilities))
        ]
    return Evaluation(split=split, labels=classes, predictions=rows, **score.model_dump(exclude={"uses_target_audio"}))


def score_predictions(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> TransferScore:
    from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

    present = sorted(set(truth.tolist()))
    recalls = recall_score(truth, predicted, labels=present, average=None, zero_division=0)
    return TransferScore(
        n=len(truth),
        bca=float(np.mean(recalls)),
        accuracy=float(accuracy_score(truth, predicted)),
        per_class_recall={classes[i]: float(r) for i, r in zip(present, recalls)},
        confusion_matrix=confusion_matrix(truth, predicted, labels=list(range(len(classes)))).tolist(),
    ) if len(truth) else _empty(len(classes))


def chance_bca(truth: np.ndarray) -> float:
    """The BCA of a predictor that knows nothing: 1 / (classes present in ``truth``)."""
    present = len(set(truth.tolist()))
    return 1.0 / present if present else 1.0


def is_collapsed(truth: np.ndarray, predicted: np.ndarray, bca: float) -> bool:
    """Whether scored predictions carry no information about the classes: every
    prediction in one class, or a BCA at or below chance (``chance_bca(truth)``, with a
    1e-9 allowance for the rounding of the recalls' mean)."""
    return len(set(predicted.tolist())) <= 1 or bca <= chance_bca(truth) + 1e-9


def _empty(n_classes: int) -> TransferScore:
    return TransferScore(n=0, bca=0.0, accuracy=0.0, per_class_recall={}, confusion_matrix=[[0] * n_classes] * n_classes)


def summarize(scores: list[Evaluation | TransferScore]) -> TestSummary:
    """Mean and population standard deviation of BCA over folds; summed confusion."""
    bcas = [s.bca for s in scores]
    return TestSummary(
        n_folds=len(scores),
        bca_mean=float(np.mean(bcas)),
        bca_sd=float(statistics.pstdev(bcas)) if len(bcas) > 1 else 0.0,
        bca_per_fold=bcas,
        accuracy_mean=float(np.mean([s.accuracy for s in scores])),
        confusion_matrix=np.sum([s.confusion_matrix for s in scores], axis=0).astype(int).tolist(),
    )


def mean_recall(scores: list[TransferScore]) -> dict[str, float]:
    """Per-class recall averaged over the folds that scored that class."""
    labels = sorted({label for s in scores for label in s.per_class_recall})
    return {
        label: float(np.mean([s.per_class_recall[label] for s in scores if label in s.per_class_recall]))
        for label in labels
    }
