"""The strategy registry: eight strategies, each a signal kernel plus its parameter space.

>>> import pitools as pt
>>> pt.strategies.names()
['sma_cross', 'macd', 'rsi_reversion', 'bollinger_reversion', 'donchian_breakout',
 'atr_breakout', 'ts_momentum', 'xs_momentum']
>>> pt.strategies.get("sma_cross").space["fast"]
Param(kind='int', low=2, high=100, default=10)

The signal kernels live in :mod:`pitools.kernels.signals` (numba); this module only holds
the small, validated description the optimizer and :func:`pitools.engine.backtest` use. Every
strategy can also be gated by the market regime (the ``regime_filter`` argument of
:func:`pitools.engine.backtest`), so it is not a parameter here.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pitools.config import project_root
from pitools.errors import DataError, did_you_mean

__all__ = ["Param", "Strategy", "register", "get", "names", "REGISTRY", "typed_params", "format_value",
           "format_params"]

SIGNIFICANT_DIGITS = 4  # a real parameter as a report shows it: 19.453824394278428 -> 19.45


@dataclass(frozen=True)
class Param:
    """One searchable parameter: integer or real, inclusive bounds, a default."""

    kind: str  # "int" or "float"
    low: float
    high: float
    default: float

    def check(self, strategy: str, name: str, value) -> float:
        """`value` as a number inside the bounds, or a DataError naming it."""
        where = f"{strategy}: parameter `{name}` = {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise DataError(f"{where} must be {'an integer' if self.kind == 'int' else 'a number'} "
                            f"from {self.low:g} to {self.high:g}")
        if self.kind == "int" and float(value) != int(value):
            raise DataError(f"{where} must be an integer from {self.low:g} to {self.high:g}")
        if not self.low <= value <= self.high:
            raise DataError(f"{where} is out of range: allowed {self.low:g} to {self.high:g}")
        return float(int(value)) if self.kind == "int" else float(value)


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its parameter space, constraints and signal kernel name."""

    name: str
    space: Mapping[str, Param]
    kernel: str  # function name in pitools.kernels.signals
    doc: str
    constraints: tuple[tuple[Callable[[dict], bool], str], ...] = ()
    portfolio_level: bool = False  # ranks the whole universe (xs_momentum)
    fields: tuple[str, ...] = ("open", "high", "low", "close")
    # parameters that count symbols of the universe (xs_momentum's top_k): above the number of
    # symbols they mean nothing (no bar ever has top_k returns to rank), so evolve searches them
    # up to the universe's size (pitools.search.evolve.SearchConfig.space)
    counts_symbols: tuple[str, ...] = ()

    @property
    def defaults(self) -> dict[str, float]:
        return {k: p.default for k, p in self.space.items()}

    def validate(self, params: Mapping | None) -> dict[str, float]:
        """Check `params` (missing ones take defaults) → a complete, ordered dict."""
        params = dict(params or {})
        unknown = [k for k in params if k not in self.space]
        if unknown:
            k = unknown[0]
            raise DataError(f"{self.name}: unknown parameter {k!r}.{did_you_mean(k, self.space)} "
                            f"Parameters: {', '.join(self.space)}")
        out = {k: p.check(self.name, k, params.get(k, p.default)) for k, p in self.space.items()}
        for ok, message in self.constraints:
            if not ok(out):
                shown = ", ".join(f"{k}={v:g}" for k, v in out.items())
                raise DataError(f"{self.name}: {message} (got {shown})")
        return out

    def typed(self, params: Mapping) -> dict:
        """`params` as people write them and as trades.db stores them: integer parameters as
        ``int`` (not ``25.0``), real ones as ``float`` with the exact value given (what was
        run: never rounded here), in the space's order; keys the space does not know follow as
        given. Nothing is checked (see :meth:`validate`); an integer parameter holding a
        fraction is left a float rather than changed.

        Example
        -------
        >>> get("rsi_reversion").typed({"upper": 70, "n": 14.0, "lower": 19.453824394278428})
        {'n': 14, 'lower': 19.453824394278428, 'upper': 70.0}
        """
        out = {k: _typed_value(self.space[k].kind, params[k]) for k in self.space if k in params}
        out.update({k: _plain(v) for k, v in params.items() if k not in self.space})
        return out

    def kernel_nb(self):
        """The numba signal kernel, writing into buffers (imported on first use: numba is not
        loaded by ``import pitools``)."""
        from pitools.kernels import signals

        return getattr(signals, self.kernel)

    def defined_at(self) -> str:
        """Where the strategy's signal kernel is written, ``path:line`` (relative to the
        project when it is inside it), for ``pitools strategies``."""
        func = getattr(self.kernel_nb(), "py_func", self.kernel_nb())  # the Python source of a numba kernel
        path = Path(inspect.getsourcefile(func)).resolve()
        lines, first = inspect.getsourcelines(func)  # from its first decorator: name the `def` line
        line = first + next(i for i, text in enumerate(lines) if text.lstrip().startswith("def "))
        root = project_root().resolve()
        return f"{path.relative_to(root) if path.is_relative_to(root) else path}:{line}"

    @property
    def builtin_id(self) -> int | None:
        """The number of a built-in signal kernel (cached by numba once for all), else None."""
        from pitools.kernels.driver import BUILTIN_KERNELS

        return BUILTIN_KERNELS.index(self.kernel) if self.kernel in BUILTIN_KERNELS else None

    def signal_kernel(self):
        """``f(open, high, low, close, params) -> (target, trail)`` with fresh arrays
        (portfolio-level strategies: their kernel, ``f(close_2d, params) -> targets``)."""
        from pitools.kernels import driver, signals

        if self.portfolio_level:
            return self.kernel_nb()
        if self.builtin_id is not None:
            return functools.partial(driver.builtin_signals_nb, self.builtin_id)
        return functools.partial(signals.signals_nb, self.kernel_nb())


def _plain(value):
    """A numpy scalar as the Python number it holds (json and repr show it plainly); anything
    else as it is."""
    return value.item() if getattr(value, "shape", None) == () and hasattr(value, "item") else value


def _typed_value(kind: str, value):
    value = _plain(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if kind == "int":
        return int(value) if float(value).is_integer() else value
    return float(value)


REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Add `strategy` to the registry (a name can be registered once)."""
    if strategy.name in REGISTRY:
        raise DataError(f"strategy {strategy.name!r} is already registered")
    REGISTRY[strategy.name] = strategy
    return strategy


def get(name: str) -> Strategy:
    """The strategy called `name`; a DataError suggesting close names otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown strategy {name!r}.{did_you_mean(str(name), REGISTRY)} "
                        f"Strategies: {', '.join(REGISTRY)}") from None


def names() -> list[str]:
    """The registered strategy names, in registration order."""
    return list(REGISTRY)


def _int(low, high, default) -> Param:
    return Param("int", low, high, default)


def _real(low, high, default) -> Param:
    return Param("float", low, high, default)


register(Strategy("sma_cross", {"fast": _int(2, 100, 10), "slow": _int(5, 400, 30)}, "sma_cross_nb",
                  "long while SMA(fast) > SMA(slow)", ((lambda p: p["fast"] < p["slow"], "`fast` must be < `slow`"),)))
register(Strategy("macd", {"fast": _int(2, 50, 12), "slow": _int(5, 200, 26), "signal": _int(2, 50, 9)}, "macd_nb",
                  "long while MACD > signal", ((lambda p: p["fast"] < p["slow"], "`fast` must be < `slow`"),)))
register(Strategy("rsi_reversion", {"n": _int(2, 50, 14), "lower": _real(5, 50, 30), "upper": _real(50, 95, 70)},
                  "rsi_reversion_nb", "buy RSI < lower, sell RSI > upper",
                  ((lambda p: p["lower"] < p["upper"], "`lower` must be < `upper`"),)))
register(Strategy("bollinger_reversion", {"n": _int(5, 200, 20), "k": _real(0.5, 4.0, 2.0)},
                  "bollinger_reversion_nb", "fade closes outside the bands, exit at the middle"))
register(Strategy("donchian_breakout", {"entry": _int(5, 250, 20), "exit": _int(2, 250, 10)},
                  "donchian_breakout_nb", "turtle breakout of the prior channel",
                  ((lambda p: p["exit"] <= p["entry"], "`exit` must be <= `entry`"),)))
register(Strategy("atr_breakout", {"n": _int(5, 200, 20), "k": _real(0.5, 4.0, 1.5), "trail_mult": _real(0.5, 8.0, 3.0)},
                  "atr_breakout_nb", "Keltner/ATR channel breakout with an ATR trailing stop"))
register(Strategy("ts_momentum", {"lookback": _int(5, 400, 120)}, "ts_momentum_nb",
                  "long after a positive lookback return, short after a negative one"))
register(Strategy("xs_momentum", {"lookback": _int(5, 400, 120), "top_k": _int(1, 500, 10), "rebalance": _int(1, 126, 21)},
                  "xs_momentum_nb", "hold the top-k of the universe by lookback return, rebalanced every n bars",
                  portfolio_level=True, fields=("open", "high", "low", "close"), counts_symbols=("top_k",)))


# ---------------------------------------------------------------- parameters as people write them

def typed_params(strategy: str | None, params: Mapping | None) -> dict:
    """`params` of `strategy` typed by its space (:meth:`Strategy.typed`): ints as ints, reals
    exact, in the space's order. For a strategy that is not registered here (a user's module
    that failed to import), or `strategy` None, values are only made plain Python numbers."""
    params = dict(params or {})
    spec = REGISTRY.get(strategy) if isinstance(strategy, str) else None
    return spec.typed(params) if spec is not None else {k: _plain(v) for k, v in params.items()}


def format_value(value) -> str:
    """One parameter value as a person writes it: ``10``, ``19.45``, ``0.001``, ``2`` (a real
    number to :data:`SIGNIFICANT_DIGITS` significant digits, never in exponent form; a whole
    number without ``.0``); None as ``—``.

    Example
    -------
    >>> [format_value(v) for v in (25.0, 19.453824394278428, 0.5, 12345.6, 7, None)]
    ['25', '19.45', '0.5', '12350', '7', '—']
    """
    value = _plain(value)
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, digits)  # to 4 significant digits (digits < 0 rounds to tens, hundreds …)
    if float(rounded).is_integer():
        return str(int(rounded))
    return f"{rounded:.{max(digits, 0)}f}".rstrip("0").rstrip(".")


def format_params(params: Mapping | None, strategy: str | None = None) -> str:
    """``fast=10, slow=30, k=2.036``: the parameters as a report shows them (:func:`format_value`),
    in the order of `strategy`'s space when it is given and registered; "" for none.

    Example
    -------
    >>> format_params({"slow": 30.0, "fast": 10.0}, "sma_cross")
    'fast=10, slow=30'
    >>> format_params({"n": 14, "k": 2.0361})
    'n=14, k=2.036'
    """
    if not params:
        return ""
    return ", ".join(f"{k}={format_value(v)}" for k, v in typed_params(strategy, params).items())
