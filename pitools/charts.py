"""plotly charts of the research notebooks, and the renderer that keeps them offline.

Notebooks call :func:`use_offline_renderer` once: figures are stored as plotly's own
mimetype (``application/vnd.plotly.v1+json``: JupyterLab renders it natively, and the
notebook stays small). The nightly HTML export turns each into a ``Plotly.newPlot`` call
against one copy of plotly.js in ``outputs/assets/`` — no CDN, no internet needed.
"""

from __future__ import annotations

__all__ = ["use_offline_renderer"]


def use_offline_renderer() -> None:
    """Show figures as plotly's mimetype only (never a CDN ``<script>``)."""
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype"
