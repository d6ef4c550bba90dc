"""pitools: trading-strategy research on a Raspberry Pi.

>>> import pitools as pt
>>> pt.make_demo_store("/tmp/pt-demo", n_symbols=20, years=2)    # doctest: +SKIP
>>> panel = pt.load_panel("/tmp/pt-demo", memory_budget_mb=500)  # doctest: +SKIP
"""

from pitools.market import regime
from pitools.engine import strategies
from pitools.engine.backtest import BacktestResult, backtest
from pitools.market.db import open_trades_db
from pitools.data import Panel, Store, estimate_panel, load_panel, load_series, make_demo_store
from pitools.errors import ConfigError, DataError, IngestError, MemoryBudgetError, PitoolsError, StoreError
from pitools.search.fitness import FitnessResult, fitness_map
from pitools.version import __version__


__all__ = [
    "BacktestResult", "ConfigError", "DataError", "FitnessResult", "IngestError", "MemoryBudgetError", "Panel",
    "PitoolsError", "Store", "StoreError", "backtest", "estimate_panel", "fitness_map", "load_panel", "load_series",
    "make_demo_store", "open_trades_db", "regime", "strategies",
]
