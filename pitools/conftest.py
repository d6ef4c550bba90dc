"""The doctests of ``pitools/`` run as a reader would type them in a checkout.

Each runs in a folder of its own whose ``data/store`` is one small demo store (shared, read
only; ``data/`` relative, as in the examples), with ``pt``, ``np``, ``pd``, ``store`` (that
store's path), ``panel`` (its bars) and ``vix``/``spx`` (its index series) already defined;
profiles and params come from this checkout. ``tests/conftest.py`` holds the fixtures of the
test suite; this one lives in the package (as numpy's does) because at the top of the checkout
it would shadow that module, which tests import by name.
"""

from __future__ import annotations

import pytest
from _pytest.doctest import DoctestItem

END = "2026-11-20"  # a fixed last session: the examples' figures do not change from day to day


@pytest.fixture(scope="session")
def doctest_home(tmp_path_factory):
    import pitools as pt

    home = tmp_path_factory.mktemp("doctest-home")
    store = home / "data" / "store"
    pt.make_demo_store(store, n_symbols=8, years=3, seed=7, end=END)
    return home, {"panel": pt.load_panel(store), "vix": pt.load_series(store, "^VIX"),
                  "spx": pt.load_series(store, "^GSPC")}


@pytest.fixture(autouse=True)
def _doctest_in_home(request, doctest_namespace):
    if not isinstance(request.node, DoctestItem):
        yield
        return
    import numpy as np
    import pandas as pd

    import pitools as pt

    here = request.getfixturevalue("tmp_path")  # what an example writes stays its own
    (here / "data").mkdir()
    home, loaded = request.getfixturevalue("doctest_home")
    (here / "data" / "store").symlink_to(home / "data" / "store")
    request.getfixturevalue("monkeypatch").chdir(here)
    store = "data/store"
    doctest_namespace.update(pt=pt, np=np, pd=pd, store=store, **loaded)
    yield
