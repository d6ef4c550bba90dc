"""The search: many candidates scored honestly — the fitness map (serial, process pool, dask),
walk-forward scoring and the deflated Sharpe, nevergrad evolution with persistent state, and the
one reader of the evaluation log.

Imports the engine and what is below it, never the market or the box.
"""
