"""Contract kits for plugin authors, one module per axis, each usable from pytest:
engines (:mod:`.engines`)."""

from serbench.testing.engines import ContractError, check_engine, engine_contract_test

__all__ = ["ContractError", "check_engine", "engine_contract_test"]
