"""Train and score one configuration: a search trial (fine-tuned on the fold's ``train``
split, scored by BCA on ``val``) or the final model (``train + val``, scored once on
``test`` and zero-shot on every transfer target).

Every training run starts from the same head (``torch.manual_seed(spec.seed)``), so a
configuration scores the same in the search and when it is run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from serbench.data.base import Utterance
from serbench.data.corpus import LoadedCorpus
from serbench.data.folds import Fold
from serbench.results.metrics import evaluate, score_predictions
from serbench.results.schema import Best, Evaluation, TransferScore
from serbench.spec import JobSpec
from serbench.study.events import Stage, StudyEvents
from serbench.study.inputs import Inputs


@dataclass(frozen=True)
class Final:
    """The final model of a fold: its hyperparameters and its scores."""

    params: dict[str, Any]  # every hyperparameter it was trained with
    test: Evaluation
    transfer: list[TransferScore]  # one per transfer target, in the job's order


class Training:
    def __init__(self, spec: JobSpec, inputs: Inputs, events: StudyEvents):
        self.spec = spec
        self.inputs = inputs
        self.events = events

    def trial(self, fold: Fold, number: int, params: dict[str, Any]) -> dict[str, Any]:
        """Train on the fold's train split, score on its validation split; the fields of
        the trial's ``TrialRecord`` other than its identity and timing."""
        train_params = self.spec.train_params(params)
        self.events.training_started(Stage.TRIAL, number, params, train_params.epochs)
        model, losses = self.train(train_params, fold.split.train)
        val = self._clips(fold.split.val)
        predicted = self.predict(model, val, train_params.maxlen)
        truth = np.array([c.label for c in val])
        score = score_predictions(truth, predicted, self.inputs.data.classes)
        return {
            "status": "ok",
            "value": score.bca,
            "val_accuracy": score.accuracy,
            "collapsed": len(set(predicted.tolist())) == 1,
            "epoch_losses": losses,
        }

    def final(self, fold: Fold, best: Best) -> Final:
        """Train the best trial's configuration on train + val; score test once, then each
        transfer target."""
        train_params = self.spec.train_params(best.params)
        self.events.training_started(Stage.FINAL, best.trial, best.params, train_params.epochs)
        model, _ = self.train(train_params, fold.split.selection)
        test = self._score(model, self._clips(fold.split.test), train_params.maxlen)
        transfer = [self._score_target(model, corpus, train_params.maxlen) for _, corpus in self.inputs.targets]
        return Final(train_params.model_dump(), test, transfer)

    def train(self, train_params, utterances: list[Utterance]):
        import torch

        from serbench.training.fit import fit

        torch.manual_seed(self.spec.seed)  # every trial starts from the same head
        model = self.inputs.backbone.build(len(self.inputs.data.classes))
        clips = self._clips(utterances)
        losses = fit(model, clips, train_params, self.spec.seed, self.inputs.cache, self.events.epoch_done)
        return model, losses

    def predict(self, model, clips, maxlen: int) -> np.ndarray:
        from serbench.training.fit import predict

        return predict(model, clips, maxlen, self.inputs.cache)

    def _clips(self, utterances: list[Utterance]) -> list:
        return [self.inputs.data.clips[u.id] for u in utterances]

    def _score(self, model, clips, maxlen: int) -> Evaluation:
        truth = np.array([c.label for c in clips])
        return evaluate(truth, self.predict(model, clips, maxlen), self.inputs.data.classes, "test")

    def _score_target(self, model, corpus: LoadedCorpus, maxlen: int) -> TransferScore:
        """Zero-shot: only target utterances whose class the model knows are scored.

        Target clips are not in the study's feature cache (their ids could collide with
        the source corpus's), so they always run through the encoder.
        """
        from serbench.training.fit import predict

        clips = [c for c in corpus.clips.values() if c.label >= 0]
        truth = np.array([c.label for c in clips])
        return score_predictions(truth, predict(model, clips, maxlen, None), self.inputs.data.classes)
