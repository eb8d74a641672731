"""What every runtime of a saved model checks before it standardises by speaker.

A model trained with ``speaker_norm`` standardises each speaker's pooled features with
that speaker's statistics: the statistics of the recordings it is given (then they must
be one speaker's, and at least two), or, for a speaker it enrolled
(``speaker_enrolment``), that speaker's training statistics (any number of
recordings). :class:`SpeakerRule` holds those checks for
:class:`~serbench.deploy.torch_runtime.TorchScorer` and
:class:`~serbench.deploy.onnx_runtime.OnnxScorer` alike.
"""

from __future__ import annotations

from typing import Mapping

from serbench.errors import UserError


class SpeakerRule:
    """Mixed into a scorer that sets ``speaker_norm`` (bool) and ``enrolment`` (enrolled
    speaker -> statistics)."""

    speaker_norm: bool
    enrolment: Mapping[str, object]

    @property
    def enrolled(self) -> list[str]:
        """The speakers whose training statistics the model keeps (``speaker_enrolment``)."""
        return sorted(self.enrolment)

    def check_speaker(self, speaker: str) -> None:
        """``UserError`` (one line) unless the model enrolled ``speaker``."""
        if speaker not in self.enrolment:
            known = ", ".join(self.enrolled) or "none (trained without speaker_enrolment)"
            raise UserError(f"--speaker {speaker}: not a speaker this model enrolled (enrolled: {known})")

    def check_group(self, count: int, speaker: str | None) -> None:
        """``UserError`` (one line) unless ``count`` inputs of ``speaker`` can be scored:
        a named ``speaker`` must be enrolled; unnamed, a model trained with
        ``speaker_norm`` standardises them together and needs two or more (none is no
        group: nothing to score)."""
        if speaker is not None:
            self.check_speaker(speaker)
        elif self.speaker_norm and count == 1:
            raise UserError(
                "this model standardises each speaker with the speaker's own statistics (speaker_norm): "
                "give it at least two recordings (or windows) of one speaker"
            )
