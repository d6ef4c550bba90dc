"""numba kernels: numpy in, numpy out; no pandas, no I/O, no validation.

Each kernel has a public wrapper elsewhere in pitools that validates and converts its
inputs (e.g. :mod:`pitools.indicators` for :mod:`pitools.kernels.indicators`). The
submodules are not imported here, so ``import pitools.kernels`` does not load numba.
"""

__all__ = ["driver", "indicators", "metrics", "signals", "simulation"]
