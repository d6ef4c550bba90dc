"""Where a store's bars came from, and the rule that keeps real and synthetic bars apart.

Each store records its provenance in its manifest, as ``info["source"]``:

* ``"demo"``   — written by :func:`~pitools.data.demo.make_demo_store` (``pitools demo-data``):
  synthetic bars only.
* ``"ingest"`` — bars imported by :func:`~pitools.data.ingest.ingest` (``pitools ingest``, the
  nightly refresh): real bars.
* ``"mixed"``  — real files imported into a demo store on purpose (``--force``).
* no key       — written by a pitools that did not record it: unknown, so nothing is refused
  (an import then records ``"ingest"``: whatever else it holds, it holds real bars now).

Why refuse: the demo's tickers, ``^GSPC`` and ``^VIX`` look like real ones. Real GOOG and
^GSPC imported into the demo store once gave a ^GSPC that was real for 1999–2018 and
synthetic after it, with no word, and every backtest, regime fit and signal read it as one
series. So an import into a demo store, or the demo written over imported bars, stops with
:class:`~pitools.errors.MixedDataError` (exit 2) unless forced.

Example
-------
>>> source_after_import(None), source_after_import("ingest"), source_after_import("demo")
('ingest', 'ingest', 'mixed')
"""

from __future__ import annotations

from pitools.errors import MixedDataError
from pitools.data.store import Store

__all__ = ["DEMO", "INGEST", "MIXED", "source_of", "check_import", "check_demo_over", "source_after_import"]

DEMO, INGEST, MIXED = "demo", "ingest", "mixed"
REAL = (INGEST, MIXED)  # stores that hold imported bars


def source_of(store: Store) -> str | None:
    """The store's ``info["source"]``, or None when it was never recorded (unknown)."""
    source = store.info.get("source")
    return source if isinstance(source, str) else None


def _contents(store: Store) -> str:
    """'24 symbols + 2 index series, 2023-11-21..2026-11-20' (and the demo's seed)."""
    n = len(store.symbols())
    text = f"{n} symbol{'s' if n != 1 else ''} + {len(store.symbols('index'))} index series"
    if store.first_date is not None:
        text += f", {store.first_date.date()}..{store.last_date.date()}"
    if "seed" in store.info and source_of(store) == DEMO:
        text += f", seed {store.info['seed']}"
    return text


def check_import(store: Store, force: bool, action: str = "importing bar files into it",
                 ways_out: str | None = None) -> None:
    """Refuse to import real bars into a store that ``pitools demo-data`` built, unless `force`.

    `action` says what would import (a refresh names its ``data_source``); `ways_out`
    replaces the default advice (another store, or ``--force``).
    """
    if force or source_of(store) != DEMO:
        return
    ways_out = ways_out or (
        "Import into another store (`--store DIR`, or a `--profile` whose data_dir is another folder), "
        "or pass `--force` (force=True) to mix them anyway: the store is then marked \"source\": \"mixed\"")
    raise MixedDataError(
        f"`store` {str(store.root)!r} was built by `pitools demo-data` and holds synthetic bars "
        f"({_contents(store)}); {action} would mix real and synthetic prices (a ^GSPC real up to one "
        f"date and synthetic after it). {ways_out}.", store=str(store.root), source=DEMO)


def check_demo_over(store: Store) -> None:
    """Refuse to write the demo universe over a store that holds imported bars (the caller
    passes ``force`` by not calling this: a forced demo rebuilds the store, as it always did)."""
    source = source_of(store)
    if source not in REAL:
        return
    held = "bars imported by `pitools ingest`" + (" mixed into demo bars" if source == MIXED else "")
    raise MixedDataError(
        f"`store` {str(store.root)!r} holds {held} ({_contents(store)}); `pitools demo-data` would "
        "replace them with synthetic bars. Write the demo into another store (`--store DIR`, or a "
        "`--profile` with its own data_dir, such as demo), or pass `--force` (force=True) to replace "
        "this store: its imported bars are dropped, the files they came from are not touched.",
        store=str(store.root), source=source)


def source_after_import(current: str | None) -> str:
    """The ``info["source"]`` of a store whose source was `current` once bars are imported
    (only a forced import reaches a demo store, see :func:`check_import`: it becomes ``"mixed"``)."""
    return MIXED if current in (DEMO, MIXED) else INGEST
