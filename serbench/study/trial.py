"""Train and score one configuration: a search trial (fine-tuned on the fold's ``train``
split, scored by BCA on ``val``) or the final model (``train + val``, scored once on
``test`` and zero-shot on every transfer target).

With ``select_on: test`` a trial instead trains on ``train + val`` and is scored on
``test`` (:func:`search_runs`): the paper's optimistic protocol, kept for comparison. With
``dataset.protocol.val_folds`` k > 1 a trial trains k times, each run on one validation
fold's training part, and its curve and value are the mean of the k runs' (no pruner then).

A search trial scores its validation split every ``pruner.report_every`` epochs and after
its last one (its *curve*), and hands each score to ``report(epoch, bca)``, which says
whether the pruner stops it there. With ``pruner.frozen_rung``, a trial that would train
its encoder first trains its configuration with the encoder frozen (cached features: a
head update per step) and reports that as epoch 0; stopped there, it never touches the
encoder. Scoring between epochs changes nothing in the training (no random numbers are
drawn), so a trial's last score is the one it would have had without reports.

Every training run starts from the same head (``torch.manual_seed(spec.seed)``), so a
configuration scores the same in the search and when it is run again. A trial's
``backbone.<option>`` parameters pick the encoder it builds (:class:`Configuration`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from serbench.data.base import Utterance
from serbench.data.corpus import LoadedCorpus
from serbench.data.folds import Fold
from serbench.results.metrics import evaluate, is_collapsed, score_predictions
from serbench.results.schema import Best, Evaluation, TransferScore
from serbench.backbones.base import Backbone
from serbench.spec import BACKBONE_PREFIX, JobSpec, TrainParams
from serbench.study.events import Stage, StudyEvents
from serbench.study.inputs import Inputs, transfer_runs

if TYPE_CHECKING:
    from serbench.training.features import FeatureCache


@dataclass(frozen=True)
class Configuration:
    """What a training run is made of: its training hyperparameters (``train``), and the
    backbone built with the run's ``backbone.<option>`` parameters (``options``) over the
    job's, with that backbone's feature cache."""

    train: TrainParams
    options: dict[str, Any]
    backbone: Backbone
    cache: FeatureCache | None

    def with_train(self, **update: Any) -> Configuration:
        return replace(self, train=self.train.model_copy(update=update))

    def params(self) -> dict[str, Any]:
        """Every hyperparameter, as a result's ``final_params`` records them: the training
        ones, then the searched backbone options as ``backbone.<option>``."""
        return {**self.train.model_dump(), **{BACKBONE_PREFIX + k: v for k, v in self.options.items()}}


@dataclass(frozen=True)
class Final:
    """The final model of a fold: its hyperparameters and its scores."""

    params: dict[str, Any]  # every hyperparameter it was trained with
    test: Evaluation
    transfer: list[TransferScore]  # one per transfer target, in the job's order
    weights: bytes | None = None  # SERModel.trained_state() as safetensors (None: not kept)


def final_params(best: Best) -> dict[str, Any]:
    """The best trial's configuration, with ``epochs`` its best epoch when it has one
    (``objective: best_epoch``); ``unfreeze`` is unchanged (an encoder that would unfreeze
    only after the last epoch stays frozen)."""
    if best.epoch is None:
        return dict(best.params)
    return {**best.params, "epochs": best.epoch}


def search_runs(spec: JobSpec, fold: Fold) -> list[tuple[list[Utterance], list[Utterance]]]:
    """What a search trial trains on and is scored on, once per validation fold: ``train``
    and ``val`` (each inner fold's with ``val_folds`` > 1) -- or, with ``select_on: test``
    (the paper's optimistic protocol), ``train + val`` and ``test``, so the trial trains
    exactly as the final model does and the test split selects."""
    if spec.select_on == "test":
        return [(fold.split.selection, fold.split.test)]
    return fold.split.validation_runs()


def speaker_grouping(train_params: TrainParams, speakers: list[str]) -> list[str] | None:
    """The grouping a model trained with ``train_params`` is scored with: each clip's
    speaker for a ``speaker_norm`` model (each speaker standardised with its own
    statistics), else ``None`` (the training set's statistics for all)."""
    return speakers if train_params.speaker_norm else None


def reads_scored_audio(train_params: TrainParams, enrolled: dict, speakers: list[str]) -> bool:
    """Whether scoring ``speakers`` reads their own unlabelled audio (transductive): a
    ``speaker_norm`` model's does, unless every one of them is ``enrolled``
    (``SERModel.enrolment``, which ``fit`` fills only with ``speaker_enrolment``)."""
    return train_params.speaker_norm and not set(speakers) <= set(enrolled)


def speakers_of(utterances: list[Utterance]) -> list[str]:
    """Each utterance's speaker, in order."""
    return [u.speaker for u in utterances]


class Curve:
    """A search trial's validation reports: scored models, the pruner's say, the record
    fields they add up to. A report is *collapsed* when its predictions are all one class
    or its BCA is at or below chance, 1 / (classes present in the validation split)
    (:func:`serbench.results.metrics.is_collapsed`); the record's flag is its value's report's."""

    def __init__(
        self,
        training: "Training",
        val: list,
        config: Configuration,
        report: Callable[[int, float], bool],
        speakers: list[str],
    ):
        self.training = training
        self.val = val
        self.truth = np.array([c.label for c in val])
        self.config = config
        self.report = report
        self.speakers = speakers
        self.points: list[tuple[int, float, float, bool]] = []  # (epoch, bca, accuracy, collapsed)
        self.folds: list[Curve] = []  # the validation folds' curves this one is the mean of

    def score(self, model, epoch: int) -> bool:
        """Score ``model`` after ``epoch`` epochs and report it; True: the pruner stops the trial."""
        predicted = self.training.predict(model, self.val, self.config, self.speakers)
        score = score_predictions(self.truth, predicted, self.training.inputs.data.classes)
        self.points.append((epoch, score.bca, score.accuracy, is_collapsed(self.truth, predicted, score.bca)))
        return bool(self.report(epoch, score.bca))

    @classmethod
    def mean_of(cls, folds: list[Curve], report: Callable[[int, float], bool]) -> Curve:
        """The curve of a trial over several validation folds (their reports at the same
        epochs): each report the mean BCA and accuracy of the folds', collapsed when any
        fold's was, handed to ``report`` in epoch order."""
        curve = cls(folds[0].training, [], folds[0].config, report, [])
        curve.folds = folds
        for reports in zip(*(fold.points for fold in folds)):
            epoch = reports[0][0]
            bca = float(np.mean([point[1] for point in reports]))
            curve.points.append((epoch, bca, float(np.mean([point[2] for point in reports])),
                                 any(point[3] for point in reports)))
            report(epoch, bca)
        return curve

    def fields(self, status: str, losses: list[float], probe_s: float | None) -> dict[str, Any]:
        """The record fields: the value is the last report's (pruned, or ``objective:
        last``) or the best trained epoch's (``objective: best_epoch``, earliest on ties)."""
        epoch, bca, accuracy, collapsed = self.points[-1]
        best_epoch = None
        if status == "ok" and self.training.spec.objective == "best_epoch":
            trained = [point for point in self.points if point[0] > 0]
            epoch, bca, accuracy, collapsed = max(trained, key=lambda point: (point[1], -point[0]))
            best_epoch = epoch
        return {
            "status": status,
            "value": bca,
            "val_accuracy": accuracy,
            "collapsed": collapsed,
            "epoch_losses": losses,
            "curve": [{"epoch": point[0], "bca": point[1]} for point in self.points],
            "epochs_trained": len(losses),
            "pruned_at": self.points[-1][0] if status == "pruned" else None,
            "best_epoch": best_epoch,
            "probe_s": probe_s,
            "val_folds": [next(point[1] for point in fold.points if point[0] == epoch) for fold in self.folds]
            or None,
        }


class Training:
    def __init__(self, spec: JobSpec, inputs: Inputs, events: StudyEvents):
        self.spec = spec
        self.inputs = inputs
        self.events = events

    def configuration(self, params: dict[str, Any]) -> Configuration:
        """A trial's (or final model's) configuration from its parameters: the job's
        training fixed parts plus ``params``, and its backbone variant."""
        options = self.spec.backbone_overrides(params)
        backbone, cache = self.inputs.variant(options)
        return Configuration(self.spec.train_params(params), options, backbone, cache)

    def trial(
        self, fold: Fold, number: int, params: dict[str, Any], report: Callable[[int, float], bool] | None = None
    ) -> dict[str, Any]:
        """Train on the fold's train split, scoring the validation split as it goes (see
        the module docstring); the fields of the trial's ``TrialRecord`` other than its
        identity and timing. ``report``: the pruner's say after each score (None: never stop)."""
        config = self.configuration(params)
        epochs = config.train.epochs
        runs = search_runs(self.spec, fold)
        if len(runs) > 1:
            return self._cross_validated(runs, number, params, config, report or (lambda epoch, bca: False))
        ((train, scored),) = runs
        val = self._clips(scored)
        curve = Curve(self, val, config, report or (lambda epoch, bca: False), speakers_of(scored))
        probe_s = None
        if self.spec.pruner.frozen_rung and config.train.unfreeze < epochs:
            started = time.perf_counter()
            self.events.training_started(Stage.PROBE, number, params, epochs)
            probe, _ = self.train(config.with_train(unfreeze=epochs), train)
            stop = curve.score(probe, 0)
            probe_s = time.perf_counter() - started
            if stop:
                return curve.fields("pruned", [], probe_s)
        self.events.training_started(Stage.TRIAL, number, params, epochs)
        losses = self._fit_scored(config, train, curve)
        pruned = len(losses) < epochs
        return curve.fields("pruned" if pruned else "ok", losses, probe_s)

    def _cross_validated(self, runs, number: int, params: dict[str, Any], config: Configuration, report) -> dict[str, Any]:
        """A trial over several validation folds (the spec allows no pruner with them):
        one training run per fold, each scored on its own validation part as it goes; the
        record's curve and value are the folds' mean (:meth:`Curve.mean_of`), its losses
        the folds' mean per epoch, ``val_folds`` each fold's score."""
        self.events.training_started(Stage.TRIAL, number, params, config.train.epochs)
        folds, losses = [], []
        for train, scored in runs:
            curve = Curve(self, self._clips(scored), config, lambda epoch, bca: False, speakers_of(scored))
            losses.append(self._fit_scored(config, train, curve))
            folds.append(curve)
        mean_losses = [float(loss) for loss in np.mean(np.array(losses), axis=0)]
        return Curve.mean_of(folds, report).fields("ok", mean_losses, None)

    def _fit_scored(self, config: Configuration, train: list[Utterance], curve: Curve) -> list[float]:
        """A fresh model trained on ``train``, scored into ``curve`` every
        ``pruner.report_every`` epochs and after its last; stops when ``curve``'s report says
        so. Its epoch losses."""
        every = self.spec.pruner.report_every
        epochs = config.train.epochs

        def after_epoch(done: int) -> bool:
            if done % every and done < epochs:
                return False
            return curve.score(model, done) and done < epochs

        model = self.build(config)
        return self.fit(model, config, train, after_epoch)

    def final(self, fold: Fold, best: Best, keep_weights: bool = True) -> Final:
        """Train the best trial's configuration on train + val (for its best epoch's
        number of epochs with ``objective: best_epoch``); score test once, then each
        transfer target. ``keep_weights``: return what training changed, to be saved."""
        config = self.configuration(final_params(best))
        self.events.training_started(Stage.FINAL, best.trial, best.params, config.train.epochs)
        model, _ = self.train(config, fold.split.selection)
        test = self._score(model, fold.split.test, config)
        transfer = self._score_targets(model, config.train)
        weights = None
        if keep_weights:
            from safetensors.torch import save

            weights = save(model.trained_state())
        return Final(config.params(), test, transfer, weights)

    def train(self, config: Configuration, utterances: list[Utterance]):
        model = self.build(config)
        return model, self.fit(model, config, utterances)

    def build(self, config: Configuration):
        """A fresh model of ``config``'s backbone; every one starts from the same head."""
        import torch

        torch.manual_seed(self.spec.seed)
        return config.backbone.build(len(self.inputs.data.classes))

    def fit(self, model, config: Configuration, utterances: list[Utterance], after_epoch=None) -> list[float]:
        from serbench.training.fit import fit

        clips = self._clips(utterances)
        events = self.events.epoch_done
        speakers = speakers_of(utterances)
        return fit(model, clips, config.train, self.spec.seed, config.cache, events, after_epoch, speakers)

    def predict(self, model, clips, config: Configuration, speakers: list[str]) -> np.ndarray:
        """Class indices of ``clips`` (of ``speakers``); a ``speaker_norm`` model
        standardises each speaker with its own statistics (an enrolled one's, with
        ``speaker_enrolment``)."""
        from serbench.training.fit import predict

        grouping = speaker_grouping(config.train, speakers)
        return predict(model, clips, config.train.maxlen, config.cache, grouping, model.enrolment)

    def _clips(self, utterances: list[Utterance]) -> list:
        return [self.inputs.data.clips[u.id] for u in utterances]

    def _score(self, model, utterances: list[Utterance], config: Configuration) -> Evaluation:
        """The test evaluation, with every clip's probabilities (its prediction is their
        argmax, as ``serbench predict`` labels a file); ``transductive`` when a
        ``speaker_norm`` model standardised a test speaker with its own statistics (with
        ``speaker_enrolment``, only a speaker it never trained on)."""
        from serbench.training.fit import predict_proba

        clips = self._clips(utterances)
        truth = np.array([c.label for c in clips])
        speakers = speakers_of(utterances)
        grouping = speaker_grouping(config.train, speakers)
        probabilities = predict_proba(model, clips, config.train.maxlen, config.cache, grouping, model.enrolment)
        predicted = probabilities.argmax(axis=1)
        ids = [c.id for c in clips]
        evaluation = evaluate(truth, predicted, self.inputs.data.classes, "test", ids, probabilities)
        return evaluation.model_copy(update={"transductive": reads_scored_audio(config.train, model.enrolment, speakers)})

    def _score_targets(self, model, train_params: TrainParams) -> list[TransferScore]:
        """One score per transfer result (:func:`~serbench.study.inputs.transfer_runs`):
        each target zero-shot (mode ``none``) and/or test-time adapted. A ``speaker_norm``
        model standardises each target speaker with its own statistics even zero-shot."""
        maxlen = train_params.maxlen
        encoded: dict[int, Any] = {}  # id(corpus) -> features of all its clips
        scores = []
        for _, _, corpus, mode in transfer_runs(self.inputs.targets):
            if mode == "none" and not train_params.speaker_norm:
                scores.append(self._score_target(model, corpus, maxlen))
                continue
            if id(corpus) not in encoded:
                encoded[id(corpus)] = self._encode_target(model, corpus, maxlen)
            scores.append(self._score_adapted(model, corpus, encoded[id(corpus)], mode, train_params.speaker_norm))
        return scores

    def _encode_target(self, model, corpus: LoadedCorpus, maxlen: int):
        """Features of every target clip, in ``corpus.clips`` order (never cached: see
        ``_score_target``)."""
        import torch

        from serbench.training.features import encode_batched

        return torch.stack(encode_batched(model, list(corpus.clips.values()), maxlen))

    def _score_adapted(self, model, corpus: LoadedCorpus, features, mode: str, speaker_norm: bool) -> TransferScore:
        """Test-time adaptation (:mod:`serbench.training.adapt`): the statistics are fitted
        on all the target's utterances (the label map's population, its labels unread);
        the scored ones are those whose class the model knows, as zero-shot."""
        clips = list(corpus.clips.values())
        logits = self._adapted_logits(model, corpus, features, mode, speaker_norm)
        known = [i for i, c in enumerate(clips) if c.label >= 0]
        truth = np.array([clips[i].label for i in known])
        predicted = logits.argmax(dim=1).numpy()[known]
        score = score_predictions(truth, predicted, self.inputs.data.classes)
        return score.model_copy(update={"uses_target_audio": True})

    def _adapted_logits(self, model, corpus: LoadedCorpus, features, mode: str, speaker_norm: bool):
        """Logits of every target clip (``corpus.clips`` order) adapted in ``mode``: grouped
        by the utterances' speakers, never their labels."""
        from serbench.training.adapt import adapted_logits, groups_for

        speaker = {u.id: u.speaker for u in corpus.utterances}
        speakers = [speaker[c.id] for c in corpus.clips.values()]
        return adapted_logits(model, features, groups_for(mode, speakers, speaker_norm))

    def _score_target(self, model, corpus: LoadedCorpus, maxlen: int) -> TransferScore:
        """Zero-shot: only target utterances whose class the model knows are scored.

        Target clips are not in the study's feature cache (their ids could collide with
        the source corpus's), so they always run through the encoder.
        """
        from serbench.training.fit import predict

        clips = [c for c in corpus.clips.values() if c.label >= 0]
        truth = np.array([c.label for c in clips])
        return score_predictions(truth, predict(model, clips, maxlen, None), self.inputs.data.classes)
