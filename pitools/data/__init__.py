"""Bars on disk and in memory: the parquet store, aligned panels, the demo universe, ingest."""

from pitools.data.demo import make_demo_store
from pitools.data.panel import Panel, PanelEstimate, estimate_panel, load_panel, load_series
from pitools.data.store import FIELDS, Store

__all__ = ["FIELDS", "Panel", "PanelEstimate", "Store", "estimate_panel", "load_panel", "load_series",
           "make_demo_store"]
