"""Corpora: the dataset adapter contract (:mod:`.base`), audio loading (:mod:`.audio`),
the unified label space (:mod:`.labels`), a loaded corpus (:mod:`.corpus`), folds
(:mod:`.folds`), corpus files (:mod:`.sources`, :mod:`.manifest`, :mod:`.download`,
:mod:`.fetch`, :mod:`.check`, :mod:`.progress`) and the built-in adapters (:mod:`.adapters`)."""

from serbench.data.base import BadFile, Clip, DatasetAdapter, Scan, Utterance
from serbench.data.sources import Source

__all__ = ["BadFile", "Clip", "DatasetAdapter", "Scan", "Source", "Utterance"]
