"""What a study tells whoever watches it (the CLI renders it with rich, tests mostly
ignore it), and which kind of training run is starting (:class:`Stage`)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from serbench.results.schema import TrialRecord


class Stage(Enum):
    """The kind of training run (as SpeechBrain's ``Stage`` names train, valid, test)."""

    TRIAL = "trial"  # a search trial: trained on the fold's train split, scored on val
    PROBE = "probe"  # a search trial's frozen probe (pruner.frozen_rung): its encoder kept frozen
    FINAL = "final"  # the best trial's configuration: trained on train + val, scored on test once


class StudyEvents:
    """Progress callbacks; every one does nothing unless overridden."""

    def step(self, message: str) -> None:
        """What the study does now ("loading backbone ...")."""

    def trials_started(self, total: int) -> None:
        """The search begins; ``total`` trials at most, over every fold."""

    def training_started(self, stage: Stage, trial: int, params: dict[str, Any], epochs: int) -> None:
        """A training run begins: search trial ``trial``, or (``Stage.FINAL``) the final
        model with trial ``trial``'s configuration."""

    def epoch_done(self, epoch: int, loss: float) -> None:
        """Epoch ``epoch`` (from 0) of the running training ended with mean loss ``loss``."""

    def trial_done(self, record: TrialRecord) -> None:
        """A search trial is journalled."""
