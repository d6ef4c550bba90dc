"""pitools: trading-strategy research on a Raspberry Pi.

>>> import pitools as pt
>>> store = pt.make_demo_store("demo/store", n_symbols=20, years=2, end="2026-11-20")
>>> panel = pt.load_panel("demo/store", memory_budget_mb=500)
>>> panel.n_symbols, panel.close.dtype
(20, dtype('float32'))
>>> res = pt.backtest("sma_cross", panel, {"fast": 10, "slow": 30})
>>> res.n_trades > 0, pt.check_lookahead("sma_cross", panel).ok     # it trades, and it does not peek
(True, True)
"""

from pitools.market import regime
from pitools.engine import strategies
from pitools.engine.backtest import BacktestResult, backtest
from pitools.engine.lookahead import check_lookahead
from pitools.market.db import open_trades_db
from pitools.data import Panel, Store, estimate_panel, load_panel, load_series, make_demo_store
from pitools.errors import ConfigError, DataError, IngestError, MemoryBudgetError, PitoolsError, StoreError
from pitools.search.fitness import FitnessResult, fitness_map
from pitools.version import __version__


__all__ = [
    "BacktestResult", "ConfigError", "DataError", "FitnessResult", "IngestError", "MemoryBudgetError", "Panel",
    "PitoolsError", "Store", "StoreError", "backtest", "check_lookahead", "estimate_panel", "fitness_map", "load_panel", "load_series",
    "make_demo_store", "open_trades_db", "regime", "strategies",
]
