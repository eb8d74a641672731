"""Contract kits for plugin authors, one module per axis, each usable from pytest:
engines (:mod:`.engines`), dataset adapters (:mod:`.datasets`), backbones
(:mod:`.backbones`), execution backends (:mod:`.backends`) and pruners (:mod:`.pruners`).
Each offers one call that runs every check (``check_engine``, ``check_adapter``,
``check_backbone``, ``check_backend``, ``check_pruner``) and raises a
:class:`ContractError` naming the clause that failed; serbench's own test suite runs
them on every built-in."""

from serbench.testing.backbones import BackboneContractError, check_backbone
from serbench.testing.backends import BackendContractError, check_backend
from serbench.testing.datasets import AdapterContractError, adapter_contract_test, check_adapter
from serbench.testing.contract import ContractError
from serbench.testing.engines import check_engine, engine_contract_test
from serbench.testing.pruners import PrunerContractError, check_pruner, pruner_contract_test

__all__ = [
    "AdapterContractError",
    "BackboneContractError",
    "BackendContractError",
    "ContractError",
    "PrunerContractError",
    "adapter_contract_test",
    "check_adapter",
    "check_backbone",
    "check_backend",
    "check_engine",
    "check_pruner",
    "engine_contract_test",
    "pruner_contract_test",
]
