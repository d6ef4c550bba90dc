"""The tune notebook's figure and widgets over a :class:`pitools.notebook.tune.session.TuneSession`.

:func:`make_figure` builds one plotly ``FigureWidget`` (three rows: the focus symbol's
price with entries and exits, the portfolio's equity against buy & hold, its drawdown);
:func:`apply` writes a :class:`~pitools.notebook.tune.session.TuneResult` into it in place. :class:`TuneApp`
lays out the ipywidgets (strategy, symbols, date range, one slider per parameter, load
and save buttons, a message line, the figure, the stats table) and sends every change
through :meth:`TuneSession.update`: bad input becomes a red message and the figure keeps
the last good data. Also importable from :mod:`pitools.notebook.tune`. Imports the session
module, never the reverse; plotly and ipywidgets are imported only when a figure or app is built.

>>> app = TuneApp(TuneSession(store, profile="demo"))          # `app` as a cell's last line shows it
>>> app.sliders["slow"].value = 80                               # redraws in place
>>> app.result.params, app.figure.layout.title.text.split(":")[0]
({'fast': 10, 'slow': 80}, 'sma_cross (fast=10, slow=80)')
>>> app.sliders["slow"].value = 10                               # bad input: a red message, the chart unchanged
>>> app.result.error, app.figure.layout.title.text.split(":")[0]
('sma_cross: `fast` must be < `slow` (got fast=10, slow=10)', 'sma_cross (fast=10, slow=80)')
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from pitools.engine import strategies as _strategies
from pitools.errors import PitoolsError
from pitools.notebook.tune.session import FigureData, TuneResult, TuneSession

__all__ = ["make_figure", "apply", "TuneApp", "TRACES"]

# make_figure's traces in order, by their legend names ("price" becomes "<symbol> price").
TRACES = ("price", "entries", "exits", "strategy equity", "buy & hold", "drawdown")


# ---------------------------------------------------------------- the figure

def make_figure(widget: bool = True):
    """The tune figure: price + entries + exits, equity vs buy & hold, drawdown (``TRACES``).

    A ``go.FigureWidget`` (plotly >= 6 draws it through anywidget; it also works in a
    kernel with no frontend, such as a papermill run), or a static ``go.Figure`` with
    ``widget=False`` or when the widget cannot be built (anywidget is not installed).
    :func:`apply` updates either in place, but only the widget redraws in the browser by
    itself: :class:`TuneApp` shows a static figure in an ``Output`` and re-displays it.

    Example
    -------
    >>> fig = make_figure(); type(fig).__name__, [t.name for t in fig.data]     # empty until apply
    ('FigureWidget', ['price', 'entries', 'exits', 'strategy equity', 'buy & hold', 'drawdown'])
    >>> type(make_figure(widget=False)).__name__
    'Figure'
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    price, entries, exits, equity, buy_hold, drawdown = TRACES
    base = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=[0.5, 0.3, 0.2], vertical_spacing=0.04)
    base.add_trace(go.Scatter(name=price, mode="lines", line=dict(color="#444", width=1)), row=1, col=1)
    base.add_trace(go.Scatter(name=entries, mode="markers",
                              marker=dict(symbol="triangle-up", size=9, color="seagreen")), row=1, col=1)
    base.add_trace(go.Scatter(name=exits, mode="markers",
                              marker=dict(symbol="triangle-down", size=9, color="firebrick")), row=1, col=1)
    base.add_trace(go.Scatter(name=equity, mode="lines", line=dict(color="royalblue")), row=2, col=1)
    base.add_trace(go.Scatter(name=buy_hold, mode="lines", line=dict(color="grey", dash="dot")), row=2, col=1)
    base.add_trace(go.Scatter(name=drawdown, mode="lines", fill="tozeroy", line=dict(color="firebrick", width=1)),
                   row=3, col=1)
    base.update_xaxes(type="date")
    base.update_yaxes(title_text="price", row=1, col=1)
    base.update_yaxes(title_text="equity", row=2, col=1)
    base.update_yaxes(title_text="drawdown", tickformat=".0%", row=3, col=1)
    base.update_layout(height=640, template="plotly_white", margin=dict(l=60, r=20, t=60, b=30),
                       title=dict(text="", font=dict(size=13)), legend=dict(orientation="h", y=1.06))
    if not widget:
        return base
    try:
        return go.FigureWidget(base)
    except ImportError:  # plotly >= 6 needs anywidget for FigureWidget
        return base


def apply(fig, result) -> bool:
    """Draw `result`'s figure data (a TuneResult or FigureData) into `fig` in place, in one
    ``plotly_update`` (one message to the browser). Returns False, changing nothing, for a
    result with an error or no data.

    Every property the update sends is given for all six traces. A ``batch_update`` sends
    only what changed, as ``[value, undefined, …]`` over the traces, and the widget's model
    in the browser keeps those undefined entries: a view drawn from it (the first one, when
    the app updates before it is shown, or any later one) lost them — the legend read
    "trace 1" … "trace 5", and a line whose data had not changed would vanish.

    Example
    -------
    >>> session = TuneSession(panel, "sma_cross")
    >>> fig = make_figure()
    >>> apply(fig, session.update({"slow": 50}))
    True
    >>> fig.data[0].name, len(fig.data[0].x), fig.data[1].text[:2], fig.data[2].text[:2]
    ('BMZ price', 753, ('long entry', 'long entry'), ('exit -2.9%', 'exit -11.2%'))
    >>> apply(fig, session.update({"slow": 5}))                 # an error: the figure keeps slow=50
    False
    """
    data = result if isinstance(result, FigureData) else None if result.error else result.figure_data
    if data is None:
        return False
    x, t = data.x, data.trades
    closed = t[~t["open_at_end"]] if len(t) else t
    style = {  # per trace, in TRACES order
        "name": [f"{data.focus} {TRACES[0]}", *TRACES[1:]],
        "x": [x, _days(t["entry_time"]), _days(closed["exit_time"]), x, x, x],
        "y": [data.close, t["entry_price"].to_numpy(np.float64), closed["exit_price"].to_numpy(np.float64),
              data.equity, data.buy_hold, data.drawdown],
        "text": [None, [f"{s} entry" for s in t["side"]], [f"exit {r:+.1%}" for r in closed["return"]],
                 None, None, None],
    }
    fig.plotly_update(restyle_data=style, relayout_data={"title.text": data.title},
                      trace_indexes=list(range(len(TRACES))))
    return True


# ---------------------------------------------------------------- the widgets

class TuneApp:
    """The ipywidgets UI over a :class:`TuneSession`; every widget is an attribute, so
    tests drive it as a person would (``app.sliders["slow"].value = 5``).

    Parameters
    ----------
    session : TuneSession
    data_dir : path, optional
        Where tonight's evolution lives (default: the session's profile).
    params_dir : path, optional
        Where ``tuned.yaml`` is saved (default: the project's ``params/``).

    Example
    -------
    >>> app = TuneApp(TuneSession(store, profile="demo"))
    >>> app.strategy.value = "rsi_reversion"                     # new sliders, the strategy's defaults
    >>> list(app.sliders), app.result.params
    (['n', 'lower', 'upper'], {'n': 14, 'lower': 30.0, 'upper': 70.0})
    """

    def __init__(self, session: TuneSession, data_dir=None, params_dir=None):
        import ipywidgets as w

        self.session, self.data_dir, self.params_dir = session, data_dir, params_dir
        self._hold = 0
        p = session.panel
        lay = dict(layout=w.Layout(width="300px"))
        self.strategy = w.Dropdown(options=_strategies.names(), value=session.strategy, description="strategy", **lay)
        known = [s for s in session.symbols if s in p.symbols]  # the session's own are checked below
        self.symbols = w.SelectMultiple(options=p.symbols, value=tuple(known), rows=8, description="symbols", **lay)
        self.focus = w.Dropdown(options=known, description="chart", **lay)
        self.start = w.DatePicker(value=_date(session.start, p.dates[0]), description="from", **lay)
        self.end = w.DatePicker(value=_date(session.end, p.dates[-1]), description="to", **lay)
        self.param_box = w.VBox()
        self.sliders: dict = {}
        self.load_button = w.Button(description="load tonight's parameters", icon="moon",
                                    layout=w.Layout(width="300px"))
        self.name = w.Text(placeholder="name of the parameter set", layout=w.Layout(width="190px"))
        self.save_button = w.Button(description="save as…", icon="save", layout=w.Layout(width="106px"))
        self.message = w.HTML()
        self.stats_html = w.HTML()
        self.figure = make_figure()
        # a static go.Figure (no anywidget) does not redraw itself: it is re-shown in an Output
        self._static = not isinstance(self.figure, w.DOMWidget)
        box = w.Layout(flex="1 1 auto", min_width="640px")
        self.figure_box = w.Output(layout=box) if self._static else w.Box([self.figure], layout=box)
        self.result: TuneResult | None = None
        self._build_sliders(session.slider_specs())
        for widget in (self.symbols, self.focus, self.start, self.end):
            widget.observe(self._changed, names="value")
        self.strategy.observe(self._strategy_changed, names="value")
        self.load_button.on_click(lambda _: self.load_evolved())
        self.save_button.on_click(lambda _: self.save())
        controls = w.VBox([self.strategy, self.symbols, self.focus, self.start, self.end, self.param_box,
                           self.load_button, w.HBox([self.name, self.save_button])])
        self.widget = w.VBox([w.HBox([controls, self.figure_box]), self.message, self.stats_html])
        self._show(session.update)  # the session's settings as given (a bad one is reported)
        if session.warning:
            self._say(session.warning, "warn")

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _build_sliders(self, specs) -> None:
        import ipywidgets as w

        self._hold += 1
        try:
            self.sliders = {}
            for s in specs:
                cls = w.IntSlider if s.kind == "int" else w.FloatSlider
                slider = cls(value=s.value, min=s.low, max=s.high, step=s.step, description=s.name,
                             continuous_update=False, layout=w.Layout(width="300px"))
                slider.observe(self._changed, names="value")
                self.sliders[s.name] = slider
            self.param_box.children = tuple(self.sliders.values())
        finally:
            self._hold -= 1

    def set_params(self, params: dict) -> None:
        """Move the sliders to `params` (ranges widened where needed) without a redraw per slider."""
        self._hold += 1
        try:
            for name, value in params.items():
                s = self.sliders.get(name)
                if s is not None:
                    s.min, s.max = min(s.min, value), max(s.max, value)
                    s.value = value
        finally:
            self._hold -= 1

    def params(self) -> dict:
        """The sliders' values."""
        return {name: s.value for name, s in self.sliders.items()}

    def _say(self, text: str, kind: str = "ok") -> None:
        color = {"error": "#b00020", "warn": "#a15c00", "ok": "#1b5e20", "info": "#555"}[kind]
        self.message.value = f'<span style="color:{color}">{html.escape(text, quote=False)}</span>'

    def _changed(self, change=None) -> None:
        if not self._hold:
            self.refresh()

    def _strategy_changed(self, change) -> None:
        self._build_sliders(self.session.slider_specs(change["new"]))
        self.refresh()

    def refresh(self) -> TuneResult | None:
        """Update the session from the widgets; draw the result, or say what is wrong."""
        p = self.session.panel
        return self._show(lambda: self.session.update(
            self.params(), symbols=list(self.symbols.value), start=self.start.value or p.dates[0],
            end=self.end.value or p.dates[-1], strategy=self.strategy.value, focus=self._focus()))

    def _show(self, update) -> TuneResult | None:
        """Run `update` (a session update); draw its result or say what is wrong."""
        try:
            res = update()
        except Exception as exc:  # noqa: BLE001 -- a bug, not input: say so, keep the figure
            self._say(f"unexpected error, the chart is unchanged: {type(exc).__name__}: {exc}", "error")
            return None
        self.result = res
        if res.error:
            self._say(f"{res.error}. The chart still shows the last good settings.", "error")
            return res
        self._hold += 1
        try:
            if list(self.focus.options) != res.symbols:
                self.focus.options = res.symbols
            self.focus.value = self.session.focus
        finally:
            self._hold -= 1
        apply(self.figure, res)
        if self._static:
            from IPython.display import clear_output, display

            with self.figure_box:
                clear_output(wait=True)
                display(self.figure)
        self.stats_html.value = _stats_html(res.stats)
        self._say(f"{res.strategy} {_strategies.format_params(res.params, res.strategy)} on {len(res.symbols)} "
                  f"symbols: updated in {res.elapsed_ms:.0f} ms",
                  "info")
        return res

    def _focus(self):
        chosen = self.focus.value
        return chosen if chosen in self.symbols.value else None

    def load_evolved(self) -> TuneResult | None:
        """Button: tonight's evolved parameters of the chosen strategy into the sliders."""
        try:
            params, source = self.session.evolved_params(self.data_dir, self.strategy.value)
        except PitoolsError as exc:
            self._say(str(exc), "error")
            return None
        self.set_params(params)
        res = self.refresh()
        if res is not None and res.ok:
            self._say(f"loaded tonight's parameters of {res.strategy} ({source}): "
                      f"{_strategies.format_params(res.params, res.strategy)}", "ok")
        return res

    def save(self) -> Path | None:
        """Button: save the sliders' values under the name typed."""
        try:
            path = self.session.save_parameter_set(self.name.value.strip(), self.params(), self.strategy.value,
                                                   self.params_dir)
        except PitoolsError as exc:
            self._say(f"not saved: {exc}", "error")
            return None
        shown = _strategies.format_params(self.params(), self.strategy.value)
        self._say(f"saved {self.strategy.value} {shown} as {self.name.value.strip()!r} in {path}", "ok")
        return path


def _days(times: pd.Series) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(times).strftime("%Y-%m-%d"), dtype=str)


def _date(value, default):
    try:
        ts = pd.Timestamp(value if value is not None else default)
    except (TypeError, ValueError):
        ts = pd.NaT
    return (pd.Timestamp(default) if ts is pd.NaT else ts).date()


def _stats_html(stats: pd.DataFrame) -> str:
    pct = ("total_return", "cagr", "max_drawdown", "win_rate", "exposure")
    fmt = {c: (lambda v: f"{v:.1%}") if c in pct else (lambda v: f"{v:,.0f}") if c in ("n_trades", "final_equity")
           else (lambda v: f"{v:.2f}") for c in stats.columns}
    table = stats.to_html(formatters=fmt, na_rep="", border=0)
    return f'<div style="max-height:320px;overflow:auto;font-size:12px">{table}</div>'
