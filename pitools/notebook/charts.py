"""plotly charts of the research notebooks, and the renderer that keeps them offline.

Notebooks call :func:`use_offline_renderer` once: figures are stored as plotly's own
mimetype (``application/vnd.plotly.v1+json``: JupyterLab renders it natively, and the
notebook stays small). The nightly HTML export turns each into a ``Plotly.newPlot`` call
against one copy of plotly.js in ``outputs/assets/`` — no CDN, no internet needed.

Every chart is a pure function: data in, a ``plotly.graph_objects.Figure`` out (nothing
shown, nothing read from disk), so the notebooks stay short and the charts are tested on
small synthetic input.

>>> labels = pd.Series(["calm", "calm", "stressed", "calm"], index=spx.index[-4:])
>>> fig = regime_chart(spx.iloc[-4:], labels, order=["calm", "stressed"])
>>> type(fig).__name__, [t.name for t in fig.data]        # the index, then one legend entry per regime
('Figure', ['^GSPC', 'calm', 'stressed'])
>>> [(band.name, band.fillcolor) for band in fig.layout.shapes]   # a background band per run, green to red
[('calm', 'rgb(0, 104, 55)'), ('stressed', 'rgb(165, 0, 38)'), ('calm', 'rgb(0, 104, 55)')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pitools.engine.backtest import equal_weight_equity
from pitools.engine.strategies import format_params as _format

__all__ = ["use_offline_renderer", "regime_colors", "regime_bands", "regime_chart", "convergence_chart",
           "param_importance", "param_heatmap", "portfolio_equity", "equity_chart", "leaderboard_table",
           "format_params"]

_CALM_TO_STRESSED = "RdYlGn_r"  # green (calm) … red (crisis)
_LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=20, t=50, b=40))


def use_offline_renderer() -> None:
    """Show figures as plotly's mimetype only (never a CDN ``<script>``)."""
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype"


# ---------------------------------------------------------------- regimes

def regime_colors(order: Sequence[str]) -> dict[str, str]:
    """A colour per regime, from green (the first, calmest) to red (the last, most stressed).

    Parameters
    ----------
    order : sequence of str
        Regime names, calmest first (``model.regimes``).

    Returns
    -------
    dict
        ``{regime: "rgb(r, g, b)"}``; the same order always gives the same colours.

    Example
    -------
    >>> regime_colors(["calm", "crisis"])["calm"]
    'rgb(0, 104, 55)'
    """
    from plotly.colors import sample_colorscale

    names = list(order)
    if not names:
        return {}
    points = [0.5] if len(names) == 1 else [i / (len(names) - 1) for i in range(len(names))]
    return dict(zip(names, sample_colorscale(_CALM_TO_STRESSED, points)))


def regime_bands(labels: pd.Series) -> pd.DataFrame:
    """Runs of consecutive sessions in one regime.

    Parameters
    ----------
    labels : pandas.Series
        A regime name per session, indexed by date (``model.predict(vix, spx)``).

    Returns
    -------
    pandas.DataFrame
        Columns ``regime``, ``start`` (first session of the run), ``end`` (the first session
        of the next run, or the last session for the last run: bands touch, no gaps) and
        ``sessions``; one row per run, oldest first.

    Example
    -------
    >>> s = pd.Series(["a", "a", "b"], index=pd.date_range("2026-01-05", periods=3))
    >>> regime_bands(s)[["regime", "sessions"]].values.tolist()
    [['a', 2], ['b', 1]]
    """
    labels = labels.dropna().sort_index()
    if labels.empty:
        return pd.DataFrame({"regime": pd.Series(dtype=object), "start": pd.Series(dtype="datetime64[ns]"),
                             "end": pd.Series(dtype="datetime64[ns]"), "sessions": pd.Series(dtype=np.int64)})
    values = labels.astype(str).to_numpy()
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    stops = np.r_[starts[1:], len(values)]
    dates = labels.index
    ends = [dates[s] if s < len(values) else dates[-1] for s in stops]
    return pd.DataFrame({"regime": values[starts], "start": dates[starts], "end": ends,
                         "sessions": (stops - starts).astype(np.int64)})


def regime_chart(index: pd.Series, labels: pd.Series, order: Sequence[str] | None = None,
                 title: str = "S&P 500 and the market regime") -> "go.Figure":
    """The index as a line over background bands coloured by regime.

    Parameters
    ----------
    index : pandas.Series
        Index closes (``^GSPC``) by date.
    labels : pandas.Series
        Regime per session (``model.predict``).
    order : sequence of str, optional
        All regime names, calmest first (``model.regimes``): fixes the colours and the
        legend order, even for regimes absent from `labels`. Default: the categories of a
        categorical `labels`, else the names in order of appearance.
    title : str
        Chart title.

    Returns
    -------
    plotly.graph_objects.Figure
        One line trace for the index, one legend-only trace per regime, and one
        rectangle shape per run of :func:`regime_bands` (``fillcolor`` from
        :func:`regime_colors`).

    Example
    -------
    >>> model = pt.regime.train(vix, spx)
    >>> labels = model.predict(vix, spx)
    >>> fig = regime_chart(spx, labels, order=model.regimes)
    >>> [t.name for t in fig.data]                      # calmest regime first, as in model.regimes
    ['^GSPC', 'calm_bull', 'volatile_bull', 'bear', 'stressed_bull']
    >>> len(fig.layout.shapes) == len(regime_bands(labels)), fig.layout.shapes[0].name
    (True, 'calm_bull')
    """
    import plotly.graph_objects as go

    if order is None:
        order = list(labels.cat.categories) if isinstance(labels.dtype, pd.CategoricalDtype) \
            else list(dict.fromkeys(labels.dropna().astype(str)))
    colors = regime_colors(order)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=index.index, y=index.to_numpy(), mode="lines", name=index.name or "index",
                             line=dict(color="black", width=1.5)))
    for name in order:  # legend entries for the bands (shapes have none)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=str(name), legendgroup="regime",
                                 marker=dict(symbol="square", size=12, color=colors[name], opacity=0.5)))
    for band in regime_bands(labels).itertuples(index=False):
        fig.add_shape(type="rect", xref="x", yref="paper", x0=band.start, x1=band.end, y0=0, y1=1,
                      fillcolor=colors.get(band.regime, "lightgrey"), opacity=0.3, line_width=0, layer="below",
                      name=band.regime)
    fig.update_layout(title=title, xaxis_title="session", yaxis_title="index level (points)", height=450,
                      legend=dict(orientation="h", y=-0.15), **_LAYOUT)
    return fig


# ---------------------------------------------------------------- evolution

def convergence_chart(history: pd.DataFrame) -> "go.Figure":
    """Best fitness so far per generation, one line per strategy.

    Parameters
    ----------
    history : pandas.DataFrame
        ``EvolveReport.history``: columns ``strategy``, ``generation``, ``best_fitness``
        (``-inf`` while a strategy has no successful evaluation: drawn as a gap).

    Returns
    -------
    plotly.graph_objects.Figure
        One lines+markers trace per strategy, in order of first appearance.

    Example
    -------
    >>> history = pd.DataFrame({"strategy": ["sma_cross"] * 3 + ["macd"] * 3, "generation": [0, 1, 2] * 2,
    ...                         "best_fitness": [0.41, 0.73, 0.73, -np.inf, 0.18, 0.52]})   # report.history
    >>> fig = convergence_chart(history)
    >>> [(t.name, t.y.tolist()) for t in fig.data]      # -inf: macd had no successful candidate yet, a gap
    [('sma_cross', [0.41, 0.73, 0.73]), ('macd', [nan, 0.18, 0.52])]
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, g in history.groupby("strategy", sort=False):
        g = g.sort_values("generation")
        y = g["best_fitness"].astype(float).replace([np.inf, -np.inf], np.nan)
        fig.add_trace(go.Scatter(x=g["generation"], y=y, mode="lines+markers", name=str(name)))
    fig.update_layout(title="Convergence: best fitness per generation", xaxis_title="generation",
                      yaxis_title="best fitness (OOS Sharpe − penalties)", height=400, **_LAYOUT)
    fig.update_xaxes(dtick=1)
    return fig


def _param_frame(evals: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([dict(p) for p in evals["params"]], index=evals.index)


def param_importance(evals: pd.DataFrame) -> pd.Series:
    """How strongly each parameter goes with fitness: absolute Spearman rank correlation.

    Parameters
    ----------
    evals : pandas.DataFrame
        Evaluations of one strategy: columns ``params`` (dict) and ``fitness`` (NaN for a
        failed candidate: ignored).

    Returns
    -------
    pandas.Series
        Per parameter, from 0 (none, or the parameter did not vary) to 1; sorted, most
        important first (ties keep the parameters' order).

    Example
    -------
    >>> e = pd.DataFrame({"params": [{"a": 1, "b": 5}, {"a": 2, "b": 5}, {"a": 3, "b": 4}],
    ...                   "fitness": [0.1, 0.2, 0.3]})
    >>> param_importance(e).index.tolist()
    ['a', 'b']
    """
    ok = evals[pd.to_numeric(evals["fitness"], errors="coerce").notna()]
    if ok.empty:
        return pd.Series(dtype=float)
    params = _param_frame(ok).astype(float)
    fit = ok["fitness"].astype(float).rank()
    out = {}
    for name in params.columns:
        x = params[name]
        c = x.rank().corr(fit) if x.nunique() > 1 and fit.nunique() > 1 else 0.0
        out[name] = 0.0 if c is None or not math.isfinite(c) else abs(float(c))
    s = pd.Series(out, dtype=float)
    return s.iloc[np.argsort(-s.to_numpy(), kind="stable")]


def param_heatmap(evals: pd.DataFrame, strategies: Sequence[str] | None = None, cols: int = 2) -> "go.Figure":
    """Evaluated candidates over their two most important parameters, coloured by fitness.

    One panel per strategy: each successful candidate is a point at (most important
    parameter, second most important) by :func:`param_importance`, coloured on one shared
    fitness scale — where the good region of the search space lies. A strategy with a
    single parameter is drawn as parameter vs fitness.

    Parameters
    ----------
    evals : pandas.DataFrame
        Columns ``strategy``, ``params`` (dict), ``fitness`` (NaN: failed, left out) — e.g.
        tonight's rows of ``evaluations.jsonl``.
    strategies : sequence of str, optional
        Panels to draw, in order; default every strategy in `evals`.
    cols : int
        Panels per row.

    Returns
    -------
    plotly.graph_objects.Figure
        One marker trace per strategy (``name`` = the strategy), axis titles = parameter names.

    Example
    -------
    >>> evals = pd.DataFrame({  # rows of evaluations.jsonl (pitools.search.evolution_log.read_evaluation_log)
    ...     "night": ["2026-11-19"] + ["2026-11-20"] * 5,
    ...     "strategy": ["sma_cross"] * 4 + ["ts_momentum"] * 2,
    ...     "params": [{"fast": 8, "slow": 40}, {"fast": 10, "slow": 30}, {"fast": 15, "slow": 60},
    ...                {"fast": 12, "slow": 90}, {"lookback": 60}, {"lookback": 180}],
    ...     "fitness": [0.2, 0.1, 0.4, 0.7, np.nan, 0.3]})
    >>> tonight = evals[evals.night == "2026-11-20"]
    >>> fig = param_heatmap(tonight)
    >>> [(t.name, len(t.x)) for t in fig.data]          # one panel per strategy; the failed candidate left out
    [('sma_cross', 3), ('ts_momentum', 1)]
    >>> param_importance(tonight[tonight.strategy == "sma_cross"]).to_dict()
    {'slow': 1.0, 'fast': 0.5}
    >>> fig.layout.xaxis.title.text, fig.layout.yaxis.title.text   # the most important parameter across
    ('slow', 'fast')
    >>> fig.layout.xaxis2.title.text, fig.layout.yaxis2.title.text  # a single parameter: against fitness
    ('lookback', 'fitness')
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(strategies) if strategies is not None else list(dict.fromkeys(evals["strategy"]))
    cols = max(1, min(int(cols), len(names) or 1))
    rows = max(1, math.ceil(len(names) / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names or None, horizontal_spacing=0.12,
                        vertical_spacing=min(0.12, 0.6 / rows))
    for i, name in enumerate(names):
        r, c = i // cols + 1, i % cols + 1
        g = evals[(evals["strategy"] == name) & pd.to_numeric(evals["fitness"], errors="coerce").notna()]
        ranked = list(param_importance(g).index)
        params = _param_frame(g) if len(g) else pd.DataFrame()
        fit = g["fitness"].astype(float)
        if len(ranked) >= 2:
            x, y, xt, yt = params[ranked[0]], params[ranked[1]], ranked[0], ranked[1]
        else:
            xt = ranked[0] if ranked else "parameter"
            x, y, yt = (params[xt] if ranked else []), fit, "fitness"
        hover = [format_params(p, name) + f"<br>fitness {f:.3f}" for p, f in zip(g["params"], fit)]
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=name, showlegend=False, text=hover,
                                 hoverinfo="text", marker=dict(color=fit, coloraxis="coloraxis", size=9,
                                                               line=dict(width=0.5, color="black"))), row=r, col=c)
        fig.update_xaxes(title_text=xt, row=r, col=c)
        fig.update_yaxes(title_text=yt, row=r, col=c)
    fig.update_layout(title="Parameters vs fitness (tonight's candidates)", height=max(320, 260 * rows),
                      coloraxis=dict(colorscale="Viridis", colorbar=dict(title="fitness")), **_LAYOUT)
    return fig


# ---------------------------------------------------------------- equity

def portfolio_equity(returns, dates) -> pd.Series:
    """Equity of 1 invested in the equal-weight portfolio, compounded as ``res.portfolio``
    does (:func:`pitools.engine.backtest.equal_weight_equity`).

    Parameters
    ----------
    returns : array-like of float
        Daily returns (``res.portfolio_returns``); NaN before the portfolio starts.
    dates : DatetimeIndex
        One date per return (``panel.dates``).

    Returns
    -------
    pandas.Series
        NaN before the bar preceding the first return, 1.0 at that bar, then
        ``cumprod(1 + r)`` (a later NaN counts as 0).

    Example
    -------
    >>> portfolio_equity([np.nan, 0.1, 0.0], pd.date_range("2026-01-05", periods=3)).tolist()
    [1.0, 1.1, 1.1]
    """

    return pd.Series(equal_weight_equity(returns, 1.0), index=pd.DatetimeIndex(dates), name="equity")


def equity_chart(curves: pd.DataFrame | Mapping[str, pd.Series], oos_start=None,
                 title: str = "Winners' equity (equal-weight portfolio of the universe)", log_y: bool = False):
    """Equity curves, one line per strategy, with the start of the out-of-sample stretch.

    Parameters
    ----------
    curves : pandas.DataFrame or dict of Series
        Equity by date, one column (or entry) per strategy (:func:`portfolio_equity`).
    oos_start : date-like, optional
        First out-of-sample session: a dashed vertical line with a label.
    title : str
        Chart title.
    log_y : bool
        Logarithmic equity axis.

    Returns
    -------
    plotly.graph_objects.Figure
        One line trace per strategy.

    Example
    -------
    >>> res = pt.backtest("sma_cross", panel, {"fast": 10, "slow": 30})
    >>> slow = pt.backtest("sma_cross", panel, {"fast": 20, "slow": 80})
    >>> fig = equity_chart({"sma_cross 10/30": portfolio_equity(res.portfolio_returns, panel.dates),
    ...                     "sma_cross 20/80": portfolio_equity(slow.portfolio_returns, panel.dates)},
    ...                    oos_start="2026-01-02")
    >>> [t.name for t in fig.data], fig.layout.annotations[0].text
    (['sma_cross 10/30', 'sma_cross 20/80'], 'out-of-sample →')
    >>> round(float(fig.data[0].y[-1]), 3), round(float(res.portfolio["final_equity"]) / 1e4, 3)  # as res ends
    (1.148, 1.148)
    """
    import plotly.graph_objects as go

    items = curves.items() if isinstance(curves, (pd.DataFrame, Mapping)) else curves
    fig = go.Figure()
    for name, s in items:
        fig.add_trace(go.Scatter(x=s.index, y=s.to_numpy(), mode="lines", name=str(name)))
    if oos_start is not None:
        x = pd.Timestamp(oos_start)
        fig.add_shape(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                      line=dict(dash="dash", color="grey", width=1))
        fig.add_annotation(x=x, y=1, xref="x", yref="paper", text="out-of-sample →", showarrow=False,
                           xanchor="left", yanchor="bottom")
    fig.update_layout(title=title, xaxis_title="session", yaxis_title="equity (start = 1.0)", height=450,
                      **_LAYOUT)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


# ---------------------------------------------------------------- tables

def format_params(params: Mapping | None, strategy: str | None = None) -> str:
    """``fast=10, slow=30`` — :func:`pitools.engine.strategies.format_params`, the one place parameters
    are written for people (integers as integers, reals to 4 significant digits).

    Example
    -------
    >>> format_params({"n": 14, "k": 2.0361})
    'n=14, k=2.036'
    """

    return _format(params, strategy)


def leaderboard_table(leaderboard: pd.DataFrame) -> pd.DataFrame:
    """A leaderboard to read: in-sample beside out-of-sample Sharpe, units in the headers.

    Parameters
    ----------
    leaderboard : pandas.DataFrame
        ``EvolveReport.leaderboard`` or tonight's rows of ``evaluations`` in trades.db:
        ``strategy``, ``fitness``, ``is_sharpe``, ``oos_sharpe``, ``deflated_sharpe``,
        ``oos_max_drawdown``, ``trades_per_year``, ``params`` (dict).

    Returns
    -------
    pandas.DataFrame
        Indexed by rank (1 = best fitness), rounded, ``params`` as text; ``worth reading``
        says ``yes`` for a positive fitness (out-of-sample Sharpe left after the penalties),
        else ``no: fitness ≤ 0`` (or ``no: no result`` when every candidate failed).

    Example
    -------
    >>> lb = pd.DataFrame({  # report.leaderboard
    ...     "strategy": ["macd", "sma_cross", "ts_momentum"], "fitness": [-0.12, 0.6342, np.nan],
    ...     "is_sharpe": [0.81, 1.234, np.nan], "oos_sharpe": [0.05, 0.91, np.nan],
    ...     "deflated_sharpe": [0.31, 0.7712, np.nan], "oos_max_drawdown": [0.2245, 0.1381, np.nan],
    ...     "trades_per_year": [9.5, 4.25, np.nan],
    ...     "params": [{"fast": 12, "slow": 26, "signal": 9}, {"fast": 12, "slow": 80}, {"lookback": 120}]})
    >>> t = leaderboard_table(lb)
    >>> print(t[["strategy", "fitness", "worth reading", "OOS Sharpe (ann.)", "params"]].to_string())
             strategy  fitness    worth reading  OOS Sharpe (ann.)                      params
    rank
    1       sma_cross    0.634              yes               0.91            fast=12, slow=80
    2            macd   -0.120  no: fitness ≤ 0               0.05  fast=12, slow=26, signal=9
    3     ts_momentum      NaN    no: no result                NaN                lookback=120
    >>> t.loc[1, ["OOS max drawdown (%)", "trades/year per symbol"]].tolist()    # 0.1381 -> 13.8 %
    [13.8, 4.25]
    """
    lb = leaderboard.sort_values("fitness", ascending=False, na_position="last")
    out = pd.DataFrame({
        "strategy": lb["strategy"].to_numpy(),
        "fitness": lb["fitness"].astype(float).round(3).to_numpy(),
        "worth reading": [_verdict(f) for f in lb["fitness"].astype(float)],
        "IS Sharpe (ann.)": lb["is_sharpe"].astype(float).round(2).to_numpy(),
        "OOS Sharpe (ann.)": lb["oos_sharpe"].astype(float).round(2).to_numpy(),
        "deflated Sharpe (prob.)": lb["deflated_sharpe"].astype(float).round(3).to_numpy(),
        "OOS max drawdown (%)": (100 * lb["oos_max_drawdown"].astype(float)).round(1).to_numpy(),
        "trades/year per symbol": lb["trades_per_year"].astype(float).round(2).to_numpy(),
        "params": [format_params(p, name) for p, name in zip(lb["params"], lb["strategy"])],
    }, index=pd.RangeIndex(1, len(lb) + 1, name="rank"))
    return out


def _verdict(fitness: float) -> str:
    if not math.isfinite(fitness):
        return "no: no result"
    return "yes" if fitness > 0 else "no: fitness ≤ 0"
