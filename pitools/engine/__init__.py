"""The engine: one strategy on one panel — validated indicator wrappers, the strategy registry
and the public ``strategy`` decorator, and ``backtest``.

Imports only :mod:`pitools.data`, :mod:`pitools.kernels` and the shared modules at the top of
the package. Submodules are not imported here (``import pitools.engine`` loads no numba).
"""
