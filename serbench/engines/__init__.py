"""Optimiser engines: the contract (:mod:`.base`: ``Engine``, ``Outcome``,
``SearchExhausted``, ``NotReady``) and the built-ins, each its own module registered through the
``serbench`` entry points like a third-party engine: ``random_search``, ``grid_search``,
``hyperopt_tpe``, ``optuna_tpe``, ``ax_bo`` (helpers they share: ``helpers``)."""

from serbench.engines.base import Engine, NotReady, Outcome, SearchExhausted, SearchSpace

__all__ = ["Engine", "NotReady", "Outcome", "SearchExhausted", "SearchSpace"]
