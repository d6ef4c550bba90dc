"""The market: what the research means for tomorrow — the regime model, the signals, and
trades.db (its schema, migrations and every SQL statement of the project).

Imports the search, the engine and what is below them, never the box or the notebook layer.
"""
