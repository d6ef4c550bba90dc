"""Tune a strategy by hand (``notebooks/tune.ipynb``): :mod:`.session` computes (a
:class:`TuneSession` over a panel loaded once, its :class:`TuneResult` and figure data),
:mod:`.app` shows (the plotly figure and the ipywidgets over a session). ``app`` imports
``session``, never the reverse.

>>> from pitools.notebook.tune import TuneApp, TuneSession
>>> app = TuneApp(TuneSession(store, profile="demo"))            # a notebook cell ending in `app` shows it
>>> type(app.widget).__name__, app.result.ok, list(app.sliders)
('VBox', True, ['fast', 'slow'])
"""

from pitools.notebook.tune.app import TRACES, TuneApp, apply, make_figure
from pitools.notebook.tune.session import (NAME_PATTERN, FigureData, SliderSpec, TuneResult, TuneSession,
                                           read_parameter_sets)

__all__ = ["TuneSession", "TuneResult", "FigureData", "SliderSpec", "make_figure", "apply", "TuneApp", "TRACES",
           "read_parameter_sets", "NAME_PATTERN"]
