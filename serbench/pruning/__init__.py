"""Pruners: stopping unpromising trials from their epoch-level validation scores. The
contract (:mod:`.base`: ``Pruner``, ``PruningContext``) and the built-ins, each its own
module registered through the ``serbench`` entry points like a third-party pruner:
``none``, ``median``, ``halving`` (successive halving) and ``hyperband``."""

from serbench.pruning.base import Pruner, PruningContext, Status

__all__ = ["Pruner", "PruningContext", "Status"]
