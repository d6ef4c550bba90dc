"""Full-universe load: ``pt.load_panel`` against naive pandas, load time and peak RSS.

Builds (once, cached under ``benchmarks/.data/``) a demo store of ``--symbols`` ×
``--years`` (default 2,556 × 20: a 5,031 × 2,556 panel, ≈ 12.9 M cells; the demo's ragged
histories store ≈ 11.5 M of them as rows), warms the page cache with one untimed load, then measures ``--repeats`` loads of the full OHLCV panel, each in a fresh process
that does only the imports and the load:

* ``pitools``: ``pt.load_panel(path)`` (float32, equities only);
* ``pandas``: what a user would write by hand: ``pd.read_parquet`` of every year file,
  ``pd.concat``, equities only, then one ``df.pivot(index="date", columns="symbol")`` of
  all five fields split into a dates × symbols frame per field (float64, pandas' default).
  One pivot, not one per field: that is ~3× faster, so the ratio is not flattered.

Both children import pitools (the peer uses it only to list the year files from the
manifest, inside its timing as ``load_panel`` does), so their import baselines match.
Time is the median of the runs; peak RSS is the largest ``VmHWM`` (``/proc/self/status``)
over the runs, never virtual size. MB = 2**20 bytes, as in ``pitools.memory.format_mb``.
Prints the goals (<= 3 s warm, <= 600 MB peak) with PASS/MISS, the manifest-only
estimate beside the measured bytes, and the pandas / pitools ratios.

Examples
--------
$ .venv/bin/python benchmarks/bench_load.py
$ .venv/bin/python benchmarks/bench_load.py --symbols 200 --years 3 --repeats 1 --json /tmp/load.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / ".data"
SEED, END = 7, "2026-11-20"
GOAL_S, GOAL_MB = 3.0, 600
MB = 2**20


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``…) in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} is not in /proc/self/status (Linux only)")


def _child(kind: str, path: str) -> dict:
    """Import, load once the `kind` way, and report time and memory (runs in a fresh process)."""
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd

    import pitools as pt
    from pitools.data import FIELDS

    t1 = time.perf_counter()
    baseline = _status("VmRSS")
    t2 = time.perf_counter()
    if kind == "pitools":
        panel = pt.load_panel(path)
        t3 = time.perf_counter()
        close, nbytes = panel.close, panel.nbytes
    else:
        store = pt.Store.open(path)
        files = [store.root / store.partitions[y].file for y in sorted(store.partitions)]
        df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        df = df[~df["symbol"].str.startswith("^")]  # equities only, as load_panel
        both = df.pivot(index="date", columns="symbol", values=list(FIELDS))
        wide = {f: both[f] for f in FIELDS}  # one dates × symbols frame per field
        t3 = time.perf_counter()
        close = wide["close"].to_numpy()
        nbytes = int(sum(w.memory_usage(index=False).sum() for w in wide.values()))
    out = {"kind": kind, "import_s": t1 - t0, "load_s": t3 - t2, "peak_rss": _status("VmHWM"),
           "baseline_rss": baseline, "nbytes": nbytes, "n_bars": close.shape[0], "n_symbols": close.shape[1],
           "n_close": int(np.count_nonzero(~np.isnan(close)))}  # after VmHWM: a cross-check of the two results
    if kind == "pitools":
        est = pt.estimate_panel(path)
        t4 = time.perf_counter()
        pt.Store.open(path).verify()  # what every first read in a process pays: sha256 of the files
        out.update(est_panel_bytes=est.panel_bytes, est_peak_bytes=est.peak_bytes, n_rows=pt.Store.open(path).n_rows,
                   verify_s=time.perf_counter() - t4)
    return out


def _run_child(kind: str, path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(path)], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"the {kind} load failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1])


def _ensure_store(symbols: int, years: int) -> tuple[Path, float | None]:
    """The cached demo store of that size; rebuilt when missing or built with other settings."""
    import pitools as pt

    path = DATA / f"full-{symbols}x{years}"
    want = {"source": "demo", "seed": SEED, "n_symbols": symbols, "years": years, "end": END}
    if pt.Store.exists(path) and pt.Store.open(path).info == want:
        return path, None
    t0 = time.perf_counter()
    pt.make_demo_store(path, n_symbols=symbols, years=years, seed=SEED, end=END, force=True)
    return path, time.perf_counter() - t0


def _machine() -> dict:
    import numpy
    import pandas
    import pyarrow

    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model"):
                cpu = value.strip()
                break
    with open("/proc/meminfo") as fh:
        ram = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemTotal:"))
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_bytes": ram, "python": platform.python_version(),
            "numpy": numpy.__version__, "pyarrow": pyarrow.__version__, "pandas": pandas.__version__,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def _summary(runs: list[dict]) -> dict:
    return {"load_s": statistics.median(r["load_s"] for r in runs),
            "import_s": statistics.median(r["import_s"] for r in runs),
            "peak_rss": max(r["peak_rss"] for r in runs),
            "baseline_rss": max(r["baseline_rss"] for r in runs)}


def _report(machine: dict, store: dict, runs: dict[str, list[dict]]) -> dict:
    pt_runs, pd_runs = runs["pitools"], runs["pandas"]
    a, b, first = _summary(pt_runs), _summary(pd_runs), pt_runs[0]
    mb = lambda n: f"{n / MB:,.1f} MB"  # noqa: E731
    err = lambda est, got: f"{100 * (est - got) / got:+.1f} %"  # noqa: E731
    load_peak = a["peak_rss"] - a["baseline_rss"]
    print(f"pitools full-universe load — {store['symbols']} symbols × {store['years']} years (seed {SEED}, "
          f"end {END})")
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {mb(machine['ram_bytes'])} RAM; "
          f"Python {machine['python']}, numpy {machine['numpy']}, pyarrow {machine['pyarrow']}, "
          f"pandas {machine['pandas']}; {machine['date']}")
    built = f"built in {store['build_s']:.1f} s" if store["build_s"] is not None else "cached"
    print(f"store: {store['path']} ({built}), {first['n_rows']:,} rows, {mb(store['disk_bytes'])} on disk")
    print(f"panel: {first['n_bars']:,} bars × {first['n_symbols']:,} symbols × 5 fields; "
          f"{len(pt_runs)} measured loads each, fresh process per load, page cache warm\n")
    rows = [
        ("load time (median)", f"{a['load_s']:.2f} s", f"{b['load_s']:.2f} s", f"{b['load_s'] / a['load_s']:.1f}×"),
        ("  runs", " ".join(f"{r['load_s']:.2f}" for r in pt_runs), " ".join(f"{r['load_s']:.2f}" for r in pd_runs), ""),
        ("import time (median)", f"{a['import_s']:.2f} s", f"{b['import_s']:.2f} s", ""),
        ("RSS after import", mb(a["baseline_rss"]), mb(b["baseline_rss"]), ""),
        ("peak RSS (VmHWM, max)", mb(a["peak_rss"]), mb(b["peak_rss"]), f"{b['peak_rss'] / a['peak_rss']:.1f}×"),
        ("peak − after import", mb(load_peak), mb(b["peak_rss"] - b["baseline_rss"]), ""),
        ("result bytes", f"{mb(first['nbytes'])} f32", f"{mb(pd_runs[0]['nbytes'])} f64", ""),
        ("result shape", f"{first['n_bars']}×{first['n_symbols']}", f"{pd_runs[0]['n_bars']}×{pd_runs[0]['n_symbols']}", ""),
        ("close bars present", f"{first['n_close']:,}", f"{pd_runs[0]['n_close']:,}", ""),
    ]
    print(f"{'':24}{'pt.load_panel':>18}{'naive pandas':>20}{'pandas / pitools':>18}")
    for label, x, y, z in rows:
        print(f"{label:24}{x:>18}{y:>20}{z:>18}")
    print("\nestimate (pt.estimate_panel, manifest only) beside the measured bytes:")
    print(f"  panel  estimate {mb(first['est_panel_bytes']):>10}   measured {mb(first['nbytes']):>10} "
          f"  error {err(first['est_panel_bytes'], first['nbytes']):>8}   (panel.nbytes)")
    print(f"  peak   estimate {mb(first['est_peak_bytes']):>10}   measured {mb(load_peak):>10} "
          f"  error {err(first['est_peak_bytes'], load_peak):>8}   (peak RSS − RSS after import)")
    verify = statistics.median(r["verify_s"] for r in pt_runs)
    print(f"\nintegrity check inside each first load (size, sha256 and row groups of every file; `Store.verify`): "
          f"{verify:.2f} s, {100 * verify / a['load_s']:.0f} % of the load")
    time_ok, rss_ok = a["load_s"] <= GOAL_S, a["peak_rss"] <= GOAL_MB * MB
    print("\ngoals (pt.load_panel):")
    print(f"  load time <= {GOAL_S:.0f} s warm  {a['load_s']:>10.2f} s   {'PASS' if time_ok else 'MISS'}")
    print(f"  peak RSS <= {GOAL_MB} MB    {mb(a['peak_rss']):>12}   {'PASS' if rss_ok else 'MISS'}")
    return {"pitools": a, "pandas": b, "goal_time": time_ok, "goal_rss": rss_ok,
            "time_ratio": b["load_s"] / a["load_s"], "rss_ratio": b["peak_rss"] / a["peak_rss"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=2556)
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0
    machine = _machine()
    path, build_s = _ensure_store(args.symbols, args.years)
    store = {"path": str(path), "symbols": args.symbols, "years": args.years, "build_s": build_s,
             "disk_bytes": sum(p.stat().st_size for p in path.rglob("*.parquet"))}
    _run_child("pitools", path)  # warm the page cache, untimed
    runs = {kind: [_run_child(kind, path) for _ in range(args.repeats)] for kind in ("pitools", "pandas")}
    summary = _report(machine, store, runs)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "store": store, "runs": runs, "summary": summary},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
