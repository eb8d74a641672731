"""The whole engine contract (``pytest`` in this folder)."""

from serbench.testing import check_engine, engine_contract_test
from serbench_engine_example.sobol import SobolEngine

# one test per clause of the contract: test_sobol_contract[bounds_and_types], ...
test_sobol_contract = engine_contract_test(SobolEngine)


def test_sobol_with_options_keeps_the_engine_contract():
    check_engine(SobolEngine, {"start": 8})  # every clause in one test
