"""Column layouts of the kernels' output arrays, and the calendar constant every annualised
figure uses (plain Python: no numba import).

The trades array of :func:`pitools.kernels.simulation.simulate_nb` has ``TRADE_FIELDS``
columns (``T_*`` are their indices); the per-symbol stats row has ``STAT_FIELDS``, which
is also ``pitools.engine.backtest.STAT_COLUMNS``.
"""

TRADE_FIELDS = ("entry_bar", "exit_bar", "side", "size", "entry_price", "exit_price", "pnl", "return", "open_at_end")
T_ENTRY_BAR, T_EXIT_BAR, T_SIDE, T_SIZE, T_ENTRY_PRICE, T_EXIT_PRICE, T_PNL, T_RETURN, T_OPEN_AT_END = range(9)

STAT_FIELDS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "n_trades", "win_rate",
               "exposure", "profit_factor", "final_equity")
N_STATS = len(STAT_FIELDS)

# NYSE sessions in a year: the one factor that annualises daily Sharpe, volatility and CAGR
SESSIONS_PER_YEAR = 252.0
