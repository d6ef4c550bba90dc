"""The ``pitools`` command (also ``python -m pitools``).

Exit codes: 0 ok, 1 the work failed, 2 bad usage or bad input (the message names the
field, the value and what is allowed). User errors print one line, never a traceback.

Each command imports what it needs inside its ``_cmd_*`` function: ``pitools --help`` and a
refused argument answer at once, without pandas, numba or jupyter.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from pitools.errors import PitoolsError

__all__ = ["main"]

log = logging.getLogger("pitools")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2



def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="demo", help="run profile from params/profiles.yaml (default: demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one profile field for this run (repeatable), e.g. --set max_symbols=500")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pitools", description="Trading-strategy research on a Raspberry Pi.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo-data", help="write a deterministic synthetic universe into a store")
    _add_profile(p)
    p.add_argument("--symbols", type=int, help="equity symbols (default: the profile's demo_symbols)")
    p.add_argument("--years", type=int, help="years of history (default: the profile's demo_years)")
    p.add_argument("--seed", type=int, help="random seed (default: the profile's seed)")
    p.add_argument("--end", help="last session YYYY-MM-DD (default: the last closed NYSE session)")
    p.add_argument("--store", type=Path, help="store folder (default: <data_dir>/store of the profile)")
    p.add_argument("--force", action="store_true", help="replace an existing store (one of imported bars too)")
    p.add_argument("--if-missing", action="store_true",
                   help="keep an existing store (a demo store built without --end that lags the last closed "
                        "session is extended: the same seed draws the same bars)")
    p.set_defaults(func=_cmd_demo_data)

    p = sub.add_parser("ingest", help="import CSV/parquet bar files; bad files are quarantined and reported")
    _add_profile(p)
    p.add_argument("sources", nargs="+", metavar="SRC", help="files or folders of bars")
    p.add_argument("--store", type=Path, help="store folder (default: <data_dir>/store of the profile)")
    p.add_argument("--format", dest="fmt", default="auto", help="auto | yahoo | stooq | parquet (default: auto)")
    p.add_argument("--quarantine", type=Path, help="folder for bad files and rows "
                   "(default: quarantine/<timestamp> beside the store folder, i.e. <data_dir>/quarantine/…)")
    p.add_argument("--force", action="store_true", help="import into a store built by `pitools demo-data` "
                   "all the same, mixing real and synthetic bars (the store is marked \"source\": \"mixed\")")
    p.add_argument("--no-adjust", dest="adjust", action="store_false",
                   help="keep raw prices even when an Adj Close column is present")
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("evolve", help="one round of evolution: prints the leaderboard, in-sample vs out-of-sample")
    _add_profile(p)
    p.add_argument("--strategy", dest="strategies", action="append", metavar="S",
                   help="a strategy to evolve (repeatable; default: all eight)")
    p.add_argument("--store", type=Path, help="store folder (default: <data_dir>/store of the profile)")
    p.add_argument("--backend", default="process", help="fitness map: process | serial | dask (default: process)")
    p.add_argument("--scheduler", help="dask scheduler address (with --backend dask), e.g. tcp://pi1:8786")
    p.add_argument("--date", help="the night to evolve for, YYYY-MM-DD: bars up to it, evaluations of nights up to "
                   "it (default: the last closed NYSE session, as `pitools nightly`)")
    p.set_defaults(func=_cmd_evolve)

    p = sub.add_parser("store", help="the bar store")
    stsub = p.add_subparsers(dest="store_command", metavar="ACTION")
    r = stsub.add_parser("repair", help="rebuild a damaged store's manifest from the data files it can read "
                         "(deletes nothing); exit 1 when some files could not be read")
    _add_profile(r)
    r.add_argument("--store", type=Path, help="store folder (default: <data_dir>/store of the profile)")
    r.set_defaults(func=_cmd_store_repair)

    p = sub.add_parser("db", help="the trades database")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    m = dbsub.add_parser("migrate", help="create or upgrade trades.db to the latest schema (backup first)")
    _add_profile(m)
    m.add_argument("--db", type=Path, help="database file (default: <data_dir>/trades.db of the profile)")
    m.set_defaults(func=_cmd_db_migrate)

    p = sub.add_parser("check", help="readiness report before a nightly run; exit 0 ready, 1 not ready")
    _add_profile(p)
    p.add_argument("--store", type=Path, help="store folder (default: <data_dir>/store of the profile)")
    p.add_argument("--db", type=Path, help="trades database (default: <data_dir>/trades.db of the profile)")
    p.add_argument("--date", help="the night to check for, YYYY-MM-DD (default: the last closed NYSE session)")
    p.add_argument("--allow-missed", type=int, default=None, metavar="N",
                   help="NYSE sessions the data may lag the night (default: the profile's max_stale_sessions)")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("nightly", help="the nightly run: papermill executes params/nightly.yaml into outputs/<date>/")
    _add_profile(p)
    p.add_argument("--date", help="the session the run is for, YYYY-MM-DD (default: the last closed NYSE session)")
    p.add_argument("--store", type=Path, help="store folder (default: <data_dir>/store of the profile)")
    p.add_argument("--outputs", type=Path, help="outputs folder (default: outputs/ of the project)")
    p.add_argument("--notebooks", type=Path, metavar="YAML", help="another notebook list (default: params/nightly.yaml)")
    p.set_defaults(func=_cmd_nightly)

    p = sub.add_parser("nightly-failed", help="(the service's OnFailure hook) record a failed night in the index")
    _add_profile(p)
    p.add_argument("--unit", default="pitools-nightly.service", help="the unit that failed")
    p.add_argument("--outputs", type=Path, help="outputs folder (default: outputs/ of the project)")
    p.set_defaults(func=_cmd_nightly_failed)

    p = sub.add_parser("install-services", help="render the systemd units of scheduled/ for this machine "
                       "(and install and enable them)")
    _add_profile(p)
    p.add_argument("--user", dest="user_mode", action="store_true",
                   help="user units (~/.config/systemd/user, with lingering) instead of system units")
    p.add_argument("--dry-run", action="store_true", help="print the units, write nothing")
    p.add_argument("--dest", type=Path, metavar="DIR", help="write the units to DIR and enable nothing")
    p.add_argument("--lab-port", type=int, default=8888, help="port of the lab service (default 8888)")
    p.set_defaults(func=_cmd_install_services)

    p = sub.add_parser("lab", help="JupyterLab for the LAN on the project folder, always behind a token or password")
    _add_profile(p)
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: the LAN)")
    p.add_argument("--port", type=int, default=8888, help="port (default 8888)")
    p.add_argument("--token-file", type=Path, help="token file (default <data_dir>/lab/token; created, 0600, if missing)")
    p.add_argument("--password-file", type=Path, help="a file holding a jupyter_server password hash (0600)")
    p.add_argument("--certfile", type=Path, help="TLS certificate (PEM), with --keyfile")
    p.add_argument("--keyfile", type=Path, help="TLS private key (PEM), with --certfile")
    p.add_argument("--cull-idle-after", type=int, default=1800, metavar="SECONDS",
                   help="shut down kernels idle this long, so they do not hold RAM the nightly run needs "
                        "(default 1800; 0: never)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--allow-root", action="store_true", help="run as root (every kernel would be a root shell "
                   "on the LAN: prefer your own user)")
    p.set_defaults(func=_cmd_lab)

    p = sub.add_parser("strategies", help="the registered strategies: parameters, what each does, where it is written")
    p.set_defaults(func=_cmd_strategies)

    p = sub.add_parser("lookahead", help="bias checks of a strategy on the profile's universe: no peeking at later "
                       "bars, no memory of where the data starts; exit 1 naming the first offending bar")
    _add_profile(p)
    p.add_argument("strategy", help="a strategy name (see params/strategies.yaml)")
    p.add_argument("--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter (repeatable; default: the strategy's defaults), e.g. --param fast=20")
    p.add_argument("--store", type=Path, help="store folder (default: <data_dir>/store of the profile)")
    p.add_argument("--cuts", type=int, default=12, help="cut points of the truncation check (default 12)")
    p.add_argument("--starts", type=int, default=3, help="later starts of the warm-up check (default 3)")
    p.add_argument("--warmup", type=int, help="bars a strategy may take to forget where its data starts "
                   "(default: 20 x its longest integer parameter)")
    p.set_defaults(func=_cmd_lookahead)

    p = sub.add_parser("summary", help="load the profile's universe and print a short summary")
    _add_profile(p)
    p.add_argument("--store", type=Path, help="store folder (default: <data_dir>/store of the profile)")
    p.set_defaults(func=_cmd_summary)
    return parser


def _profile(args):
    from pitools.config import load_profile

    return load_profile(args.profile, overrides=args.overrides)


def _store_dir(args, profile) -> Path:
    return args.store if args.store is not None else profile.store_dir


def _cmd_demo_data(args) -> int:
    from pitools.data import Store, make_demo_store
    from pitools.progress import reporter

    profile = _profile(args)
    store = _store_dir(args, profile)
    n = args.symbols if args.symbols is not None else profile.demo_symbols
    years = args.years if args.years is not None else profile.demo_years
    seed = args.seed if args.seed is not None else profile.seed
    force = args.force
    if args.if_missing and Store.exists(store):
        s = Store.open(store)
        source = s.info.get("source")
        held = "" if source in ("demo", None) else f', "source": "{source}": not the demo'
        span = f"{store} ({len(s.symbols())} symbols, {s.first_date.date()}..{s.last_date.date()}{held})"
        behind = _demo_behind(s, args.end)
        if not behind:
            print(f"store exists: {span}; left as it is")
            return EXIT_OK
        # the demo is its own data source: the same seed draws the same bars, so a later end only
        # adds the sessions since (stale data would make tonight's signals refuse)
        print(f"demo store {span} is {behind} session{'s' if behind != 1 else ''} behind: extending it")
        n, years, seed = (int(s.info.get(k, d)) for k, d in (("n_symbols", n), ("years", years), ("seed", seed)))
        force = True
    t0 = time.perf_counter()
    s = make_demo_store(store, n_symbols=n, years=years, seed=seed, end=args.end, force=force,
                        progress=reporter("demo-data", unit="symbols"))
    print(f"demo store: {store} — {len(s.symbols())} symbols + {len(s.symbols('index'))} index series, "
          f"{len(s.dates())} sessions {s.first_date.date()}..{s.last_date.date()}, {s.n_rows:,} rows, "
          f"seed {seed}, {time.perf_counter() - t0:.1f} s")
    return EXIT_OK


def _demo_behind(store, end) -> int:
    """Sessions a demo store built to the last closed session (no ``--end``) lags `end` (default:
    the last closed session); 0 for other stores."""
    from pitools.data.freshness import resolve_night, sessions_missed

    if store.info.get("source") != "demo" or not store.info.get("follows_calendar") or store.last_date is None:
        return 0
    return sessions_missed(store.last_date, resolve_night(end, what="--end"))


def _cmd_ingest(args) -> int:
    from pitools.data.ingest import QuarantineError, ingest
    from pitools.progress import reporter

    profile = _profile(args)
    store = _store_dir(args, profile)
    try:  # no --quarantine: ingest puts it beside the store (--store DIR too), not in the profile's data_dir
        report = ingest(args.sources, store, fmt=args.fmt, quarantine=args.quarantine, adjust=args.adjust,
                        progress=reporter("ingest", unit="files"), force=args.force)
    except QuarantineError as exc:  # the rest was imported: show what happened, then the error
        print(exc.report.summary())
        raise
    print(report.summary())
    if not report.ok:
        print("pitools: error: nothing usable was imported; see the reasons above", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _numba_cache() -> None:
    """Point numba at the one cache of compiled kernels (pitools.kernels.cache_dir, shared by
    every data folder and profile) before numba is imported; a NUMBA_CACHE_DIR already in the
    environment wins."""
    if "numba" not in sys.modules and not os.environ.get("NUMBA_CACHE_DIR"):
        from pitools.kernels import use_cache_dir

        use_cache_dir()


def _cmd_evolve(args) -> int:
    _numba_cache()  # before the search modules: their scoring imports the metric kernels
    from pitools.search.evolve import evolve

    profile = _profile(args)
    _numba_cache()
    report = evolve(profile, strategies=args.strategies, store=_store_dir(args, profile), backend=args.backend,
                    scheduler=args.scheduler, night=args.date)
    print(report.to_text())
    return EXIT_OK


def _cmd_store_repair(args) -> int:
    from pitools.data.repair import repair

    profile = _profile(args)
    report = repair(_store_dir(args, profile))
    print(report.text())
    return EXIT_OK if report.complete else EXIT_FAILED


def _cmd_db_migrate(args) -> int:
    from pitools.market.db import migrate

    path = args.db if args.db is not None else _profile(args).data_dir / "trades.db"
    new = not path.exists()
    before, after, backup = migrate(path)
    if new:
        print(f"{path}: created at schema version {after}")
    elif before == after:
        print(f"{path}: schema version {after}, up to date")
    else:
        print(f"{path}: schema version {before} -> {after}" + (f"; backup of the old one: {backup}" if backup else ""))
    return EXIT_OK


def _cmd_check(args) -> int:
    from pitools.box.health import check

    profile = _profile(args)
    report = check(profile, store=_store_dir(args, profile), db=args.db, night=args.date,
                   allowed_missed=args.allow_missed)
    print(report.text())
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_nightly(args) -> int:
    from pitools.box.nightly import run_nightly

    profile = _profile(args)
    run = run_nightly(profile, night=args.date, store=args.store, outputs=args.outputs, overrides=args.overrides,
                      notebooks=args.notebooks)
    print(run.breakdown())
    print(f"index: {(run.run_dir.parent / 'index.html').resolve()}")
    return run.exit_code


def _cmd_nightly_failed(args) -> int:
    from pitools.config import project_root
    from pitools.box.nightly import mark_failed

    # No profile is loaded: the hook must record the failure even when the profile file is
    # what broke the night.
    outputs = args.outputs if args.outputs is not None else project_root() / "outputs"
    path = mark_failed(outputs, unit=args.unit)
    print(f"failure of {args.unit} recorded: {path}")
    return EXIT_OK


def _cmd_install_services(args) -> int:
    from pitools.box.services import install_services

    profile = _profile(args)
    print(install_services(profile, user_mode=args.user_mode, dry_run=args.dry_run, dest=args.dest,
                           lab_port=args.lab_port))
    return EXIT_OK


def _cmd_lab(args) -> int:
    from pitools.box.lab import lab_config, run_lab

    config = lab_config(_profile(args), ip=args.ip, port=args.port, token_file=args.token_file,
                        password_file=args.password_file, certfile=args.certfile, keyfile=args.keyfile,
                        cull_idle_after=args.cull_idle_after, open_browser=False if args.no_browser else None,
                        allow_root=args.allow_root)
    return run_lab(config)


def _cmd_strategies(args) -> int:
    _numba_cache()
    from pitools.engine import strategies

    for name in strategies.names():
        spec = strategies.get(name)
        space = ", ".join(f"{k} {p.low:g}..{p.high:g} ({p.default:g})" for k, p in spec.space.items())
        print(f"{name:<20} {spec.doc}\n{'':<20} {space}\n{'':<20} {spec.defined_at()}")
    return EXIT_OK


def _cmd_lookahead(args) -> int:
    _numba_cache()
    from pitools.data.universe import profile_universe
    from pitools.engine.lookahead import check_lookahead
    from pitools.errors import ConfigError
    from pitools.params_yaml import parse_params_value

    params = {}
    for text in args.params:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"`--param` expects NAME=VALUE, got {text!r} (for example --param fast=20)")
        params[name.strip()] = parse_params_value(value.strip(), f"`--param {name.strip()}`")
    profile = _profile(args)
    panel = profile_universe(profile, _store_dir(args, profile)).load()
    report = check_lookahead(args.strategy, panel, params or None, cuts=args.cuts, starts=args.starts,
                             warmup=args.warmup)
    print(report.text())
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_summary(args) -> int:
    import numpy as np

    from pitools.data import load_series
    from pitools.data.universe import profile_universe
    from pitools.memory import format_mb, peak_rss_bytes

    profile = _profile(args)
    store_dir = _store_dir(args, profile)
    universe = profile_universe(profile, store_dir)
    store = universe.store
    t0 = time.perf_counter()
    panel = universe.load()
    took = time.perf_counter() - t0
    est = panel.meta["estimate"]
    close = panel.close
    coverage = float(np.isfinite(close).mean()) if close.size else 0.0
    first_idx = np.argmax(np.isfinite(close), axis=0)
    last_idx = close.shape[0] - 1 - np.argmax(np.isfinite(close[::-1]), axis=0)
    cols = np.arange(close.shape[1])
    growth = close[last_idx, cols].astype(float) / close[first_idx, cols].astype(float) - 1.0
    order = np.argsort(growth)
    print(f"pitools summary — profile {profile.name!r}, store {store_dir}")
    print(f"  store   : {len(store.symbols())} equities + {len(store.symbols('index'))} index series, "
          f"{store.n_rows:,} rows, {store.first_date.date()}..{store.last_date.date()}")
    print(f"  panel   : {panel.n_symbols} symbols × {panel.n_bars} sessions "
          f"({panel.dates[0].date()}..{panel.dates[-1].date()}), {', '.join(panel.fields)}")
    print(f"  memory  : {format_mb(panel.nbytes)} held (estimated {format_mb(est.panel_bytes)} before loading; "
          f"budget {profile.memory_budget_mb} MB), peak RSS {format_mb(peak_rss_bytes())}")
    print(f"  loaded  : in {took:.2f} s; {coverage:.1%} of symbol-sessions have a bar")
    best = ", ".join(f"{panel.symbols[i]} {growth[i]:+.0%}" for i in order[::-1][:3])
    worst = ", ".join(f"{panel.symbols[i]} {growth[i]:+.0%}" for i in order[:3])
    print(f"  best    : {best}")
    print(f"  worst   : {worst}")
    for name in ("^GSPC", "^VIX"):
        if name in store.symbols("index") and store.symbol_info(name).last >= universe.start:
            s = load_series(store, name, start=universe.start)
            print(f"  {name:<8}: {s.iloc[-1]:,.2f} on {s.index[-1].date()} "
                  f"({s.iloc[-1] / s.iloc[0] - 1:+.1%} over the window)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pitools`` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except PitoolsError as exc:
        print(f"pitools {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"pitools {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `pitools summary | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:  # disk full, a read-only folder: the work failed, say where in one line
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"pitools {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
