"""The nightly run's HTML: code-hidden reports of executed notebooks, and ``outputs/index.html``.

Everything here renders with no internet connection and no server: plotly figures (stored
in the notebooks as plotly's mimetype) become ``Plotly.newPlot`` calls against one copy of
plotly.js in ``outputs/assets/``; the index is one static page that refreshes itself while
a run is in progress and shows each run's log tail in a CSS-only modal (the old
dashboard's log view, without the dashboard). The runner's record of a run (``run.json``) is
read here too, for the index and for the morning report's table of resources per notebook.

>>> export_html("outputs/2026-11-20/03_research.ipynb", "outputs/2026-11-20/03_research.html")  # doctest: +SKIP
>>> write_index("outputs")                                                                        # doctest: +SKIP
"""

from __future__ import annotations

import copy
import datetime as dt
import html
import json
import math
import uuid
from pathlib import Path

import pandas as pd

from pitools.data.atomic import write_bytes_atomic

__all__ = ["PLOTLY_MIME", "write_public", "plotly_asset", "export_html", "read_runs", "write_index", "LOG_NAME",
           "RUN_FILE", "read_run_record", "resources_table"]

PLOTLY_MIME = "application/vnd.plotly.v1+json"
RUN_FILE = "run.json"
LOG_NAME = "nightly.log"
FAILURES_DIR = "failures"
_TEMPLATE = Path(__file__).with_name("templates") / "report.html.j2"
_LOG_TAIL_LINES = 60


def write_public(path: str | Path, text: str | bytes) -> Path:
    """Write atomically, readable by everyone (a web server or another user may serve outputs/)."""
    write_bytes_atomic(path, text.encode() if isinstance(text, str) else text, perms=0o644)
    return Path(path)


def plotly_asset(outputs: str | Path) -> str:
    """Copy plotly.js (the version of the installed plotly) into ``outputs/assets/`` once;
    returns its path relative to `outputs`."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    rel = f"assets/plotly-{get_plotlyjs_version()}.min.js"
    path = Path(outputs) / rel
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_public(path, get_plotlyjs())
    return rel


def _script_json(value) -> str:
    # inside <script>, "</" would end the element early
    return json.dumps(value).replace("</", "<\\/")


def _plotly_to_html(nb) -> None:
    """Give every plotly output a text/html rendering that draws it with the local plotly.js."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            fig = out.get("data", {}).get(PLOTLY_MIME)
            if fig is None:
                continue
            div = f"plot-{uuid.uuid4().hex[:12]}"
            height = (fig.get("layout") or {}).get("height") or 450
            out["data"]["text/html"] = (
                f'<div id="{div}" class="plotly-graph-div" style="height:{int(height)}px; width:100%;"></div>\n'
                f'<script type="text/javascript">\n'
                f'if (window.Plotly) {{ Plotly.newPlot("{div}", {_script_json(fig.get("data", []))}, '
                f'{_script_json(fig.get("layout", {}))}, {{"responsive": true, "displaylogo": false}}); }}\n'
                f'else {{ document.getElementById("{div}").textContent = '
                f'"plotly.js did not load (outputs/assets/ missing?)"; }}\n</script>')


def export_html(ipynb: str | Path, html_path: str | Path, plotly_src: str | None = None,
                caption: str = "", failed: bool = False, notebook=None) -> Path:
    """Write a code-hidden HTML report of the executed notebook `ipynb` (atomically).

    Outputs, markdown and errors stay visible; code cells and prompts are hidden.
    `plotly_src` is the plotly.js URL relative to the HTML file; by default the copy that
    :func:`plotly_asset` keeps in ``<outputs>/assets/``, the HTML being in ``<outputs>/<run>/``.
    `notebook` (a notebook node) is rendered instead of reading `ipynb`: the stand-in the
    runner makes when the file is truncated (a full disk) or unreadable.
    """
    if plotly_src is None:
        plotly_src = "../" + plotly_asset(Path(html_path).resolve().parent.parent)
    import nbformat
    from nbconvert import HTMLExporter

    nb = notebook if notebook is not None else nbformat.read(str(ipynb), as_version=4)
    nb = copy.deepcopy(nb)
    _plotly_to_html(nb)
    exporter = HTMLExporter(template_name="lab", template_file=str(_TEMPLATE),
                            extra_template_paths=[str(_TEMPLATE.parent)],
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    resources = {"metadata": {"name": Path(ipynb).stem}, "plotly_src": plotly_src,
                 "ipynb_name": Path(ipynb).name, "report_caption": caption, "report_failed": failed}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return write_public(html_path, body)


# ---------------------------------------------------------------- the index of runs

def read_runs(outputs: str | Path) -> list[dict]:
    """Every run record (``outputs/*/run.json``), newest first; ``dir`` is the folder name."""
    runs = []
    for path in Path(outputs).glob(f"*/{RUN_FILE}"):
        if path.parent.name.startswith("."):
            continue  # a run being deleted by retention
        rec = read_run_record(path.parent)  # None: a record being replaced, or damaged (the folder stays)
        if rec is not None:
            rec["dir"] = path.parent.name
            runs.append(rec)
    runs.sort(key=lambda r: (str(r.get("started_at", "")), r["dir"]), reverse=True)
    return runs


def read_failures(outputs: str | Path) -> list[dict]:
    """Failure markers written by the service's OnFailure hook, newest first."""
    marks = []
    for path in (Path(outputs) / FAILURES_DIR).glob("*.json"):
        try:
            marks.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(marks, key=lambda m: str(m.get("time", "")), reverse=True)


def _mb(n) -> str:
    return "" if not n else f"{n / 2**20:,.0f} MB"


def _duration(s) -> str:
    if s is None:
        return ""
    s = float(s)
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-_LOG_TAIL_LINES:])


_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e4e4e4; vertical-align: top; }
th { background: #f6f6f6; }
.status { font-weight: 600; border-radius: 4px; padding: 1px 6px; }
.ok { background: #e3f6e8; color: #17672e; } .failed, .timeout { background: #fde8e8; color: #a11; }
.running { background: #e8f0fe; color: #1a4fa3; } .interrupted, .skipped, .pending { background: #f1f1f1; color: #555; }
.nb { white-space: nowrap; margin-right: 10px; }
.banner { background: #fde8e8; border: 1px solid #f3b3b3; padding: 10px 14px; margin-bottom: 16px; }
.modal { display: none; position: fixed; inset: 0; background: rgba(0,0,0,.45); }
.modal:target { display: block; }
.modal > div { background: #fff; margin: 5vh auto; width: min(1000px, 92vw); max-height: 85vh; overflow: auto;
               padding: 14px 18px; border-radius: 6px; }
.modal pre { font-size: 12px; white-space: pre-wrap; }
small { color: #666; }
"""


def _notebook_links(run: dict) -> str:
    parts = []
    for nb in run.get("notebooks", []):
        st = nb.get("status", "pending")
        label = f'{html.escape(nb["name"])} <span class="status {st}">{st}</span>'
        if nb.get("html"):
            label = f'<a href="{html.escape(run["dir"])}/{html.escape(nb["html"])}">{label}</a>'
        parts.append(f'<span class="nb">{label}</span>')
    return " ".join(parts)


def write_index(outputs: str | Path, live: bool | None = None) -> Path:
    """Regenerate ``outputs/index.html`` from the run records (atomically).

    It refreshes itself every 10 s while a run is in progress (`live`; by default: when a
    record says ``running``).
    """
    outputs = Path(outputs)
    runs = read_runs(outputs)
    failures = read_failures(outputs)
    if live is None:
        live = any(r.get("status") == "running" for r in runs)
    newest_ok = next((r for r in runs if r.get("status") == "ok"), None)
    banner = ""
    recent = [f for f in failures if newest_ok is None or str(f.get("time", "")) > str(newest_ok.get("started_at", ""))]
    if recent:
        f = recent[0]
        banner = (f'<div class="banner"><b>The nightly service failed</b> at {html.escape(str(f.get("time")))} '
                  f'({html.escape(str(f.get("unit", "")))}{": " + html.escape(str(f["result"])) if f.get("result") else ""}). '
                  f'See <code>journalctl -u {html.escape(str(f.get("unit", "pitools-nightly.service")))}</code>'
                  f' and the run below; {len(recent)} failure(s) since the last good night.</div>')
    rows, modals = [], []
    for i, r in enumerate(runs):
        st = r.get("status", "unknown")
        log_id = f"log-{i}"
        rows.append(
            f'<tr><td><b>{html.escape(str(r.get("night", r["dir"])))}</b><br><small>{html.escape(r["dir"])} · '
            f'{html.escape(str(r.get("profile", "")))}</small></td>'
            f'<td><span class="status {st}">{html.escape(st)}</span></td>'
            f'<td>{html.escape(str(r.get("started_at", ""))[:19].replace("T", " "))}</td>'
            f'<td>{_duration(r.get("duration_s"))}</td><td>{_mb(r.get("peak_pss_bytes"))}</td>'
            f'<td>{_notebook_links(r)}</td>'
            f'<td><a href="#{log_id}">log</a> · <a href="{html.escape(r["dir"])}/{LOG_NAME}">file</a> · '
            f'<a href="{html.escape(r["dir"])}/{RUN_FILE}">run.json</a></td></tr>')
        modals.append(f'<div class="modal" id="{log_id}"><div><a href="#">close ✕</a> '
                      f'<b>{html.escape(r["dir"])}</b> — last {_LOG_TAIL_LINES} lines of {LOG_NAME}'
                      f'<pre>{html.escape(_log_tail(outputs / r["dir"] / LOG_NAME))}</pre></div></div>')
    refresh = '<meta http-equiv="refresh" content="10">' if live else ""
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pitools · nightly runs</title><style>{_CSS}</style></head>
<body>
<h1>Nightly runs</h1>
<p><small>{len(runs)} run(s) · generated {html.escape(now)}{" · a run is in progress: this page refreshes every 10 s" if live else ""}</small></p>
{banner}
<table id="runs">
<tr><th>night</th><th>status</th><th>started</th><th>duration</th><th>peak memory (PSS)</th><th>reports</th><th>log</th></tr>
{"".join(rows) if rows else '<tr><td colspan="7">No runs yet: <code>pitools nightly</code></td></tr>'}
</table>
{"".join(modals)}
</body></html>
"""
    return write_public(outputs / "index.html", body)


# ---------------------------------------------------------------- the run record

def read_run_record(run_dir) -> dict | None:
    """``run_dir/run.json`` as written by the nightly runner, or None (no run_dir, no file, unreadable)."""
    if run_dir is None:
        return None
    path = Path(run_dir) / RUN_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def resources_table(record: dict, now=None, running_rss_bytes: int | None = None) -> pd.DataFrame:
    """Per notebook of a run record: status, duration (s), peak PSS and RSS (MB), and a total row.

    The total's duration is the sum, its memory the run's ``peak_pss_bytes`` (else the
    largest notebook's). A notebook still running (the report itself, read while the run
    goes on) says ``running``, its duration so far (from its ``started_at`` to `now`,
    default the current time) and, given `running_rss_bytes`, its kernel's peak RSS so far;
    what the runner has not measured yet is NaN (a report shows it as a dash).
    """
    mb = 1024.0 * 1024.0
    moment = pd.Timestamp.now(tz="UTC") if now is None else _utc(now)
    rows = {}
    for nb in record.get("notebooks") or []:
        status = nb.get("status", "?")
        row = {"status": status, "duration (s)": _float(nb.get("duration_s")),
               "peak PSS (MB)": _float(nb.get("peak_pss_bytes")) / mb,
               "peak RSS (MB)": _float(nb.get("peak_rss_bytes")) / mb}
        if status == "running":
            started = _utc(nb.get("started_at"))
            if not math.isfinite(row["duration (s)"]) and started is not None and moment is not None:
                row["duration (s)"] = max((moment - started).total_seconds(), 0.0)
            if not math.isfinite(row["peak RSS (MB)"]) and running_rss_bytes:
                row["peak RSS (MB)"] = float(running_rss_bytes) / mb
        rows[str(nb.get("name", "?"))] = row
    out = pd.DataFrame.from_dict(rows, orient="index",
                                 columns=["status", "duration (s)", "peak PSS (MB)", "peak RSS (MB)"])
    run_pss = _float(record.get("peak_pss_bytes")) / mb
    total = {"status": record.get("status", ""), "duration (s)": out["duration (s)"].sum(min_count=1),
             "peak PSS (MB)": run_pss if math.isfinite(run_pss) else out["peak PSS (MB)"].max(),
             "peak RSS (MB)": out["peak RSS (MB)"].max()}
    out.loc["total"] = total
    out.index.name = "notebook"
    return out.round({"duration (s)": 1, "peak PSS (MB)": 1, "peak RSS (MB)": 1})


def _utc(value) -> pd.Timestamp | None:
    """`value` (an ISO time, naive meaning UTC) as a UTC timestamp; None when it is not one."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if ts is pd.NaT:
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _float(v) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan
