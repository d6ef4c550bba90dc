"""A nightly run that went fine prints no ERROR: two sources of terminal noise, stopped at the source.

**"[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel."** (2 of about 10 nights that ended
ok). jupyter_client's ``shutdown_kernel`` always interrupts the kernel first — SIGINT to its
process group — and only then asks it to shut down. papermill asks for ``kernel_info`` after the
last cell and shuts the kernel down the moment the reply arrives. ipykernel arms SIGINT
(``default_int_handler``) while it handles a message and puts "ignore" back only after the
handler returns; the reply goes out from inside the handler. When the runner reads the reply
before the kernel has left the handler (a loaded Pi deschedules the kernel right there), the
interrupt lands inside it and ipykernel logs that line on its stderr, which is the nightly's
terminal and journal. :func:`quiet_shutdown` makes a kernel manager that skips that interrupt
while shutting down. A nightly kernel is shut down only after papermill has finished its
notebook (every cell ran, or one failed), so there is nothing to interrupt; a kernel stuck in a
cell is killed by the runner's wall-clock watch, and by jupyter_client itself when the shutdown
request is not answered in time. (Checked against jupyter_client 8.10, ipykernel 7.4, papermill
2.7: ``_async_shutdown_kernel`` calls ``self._async_interrupt_kernel()`` after setting
``self.shutting_down``.)

**papermill's "Input Notebook: …" lines before a validation error.** The runner checks each
notebook's ``parameters`` cell with ``papermill.inspect_notebook``, which logs "Input Notebook"
at INFO; the command line logs INFO to the terminal, so a ``--date`` refused a moment later was
preceded by five such lines. :func:`inspect_parameters` reads the parameters with papermill's
INFO lines held back (its warnings and errors still show).

>>> manager = quiet_shutdown(AsyncKernelManager)                       # doctest: +SKIP
>>> pm.execute_notebook(src, out, kernel_manager_class=manager)       # doctest: +SKIP
>>> inspect_parameters("notebooks/03_research.ipynb")                 # doctest: +SKIP
{'profile', 'overrides', 'night', 'store', 'run_dir', 'run_id'}
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

__all__ = ["quiet_shutdown", "inspect_parameters", "papermill_info_held_back"]


def quiet_shutdown(manager_class: type) -> type:
    """A subclass of `manager_class` (a jupyter_client ``KernelManager`` or
    ``AsyncKernelManager``) whose shutdown does not interrupt the kernel first.

    An interrupt asked for at any other time (a person pressing the stop button, a
    restart) is sent as before.

    Example
    -------
    >>> from jupyter_client.manager import AsyncKernelManager
    >>> quiet_shutdown(AsyncKernelManager).__name__
    'QuietShutdownAsyncKernelManager'
    """

    class QuietShutdown(manager_class):
        async def _async_interrupt_kernel(self) -> None:
            if getattr(self, "shutting_down", False):
                return  # see the module doc: the interrupt before a shutdown is the ERROR line's cause
            await super()._async_interrupt_kernel()

    QuietShutdown.__name__ = QuietShutdown.__qualname__ = f"QuietShutdown{manager_class.__name__}"
    QuietShutdown.__module__ = __name__
    return QuietShutdown


@contextlib.contextmanager
def papermill_info_held_back():
    """papermill's INFO lines are not logged meanwhile (its warnings and errors are)."""
    logger = logging.getLogger("papermill")
    old = logger.level
    logger.setLevel(max(old, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(old)


def inspect_parameters(path: str | Path) -> set[str]:
    """The names the ``parameters`` cell of the notebook at `path` defines
    (``papermill.inspect_notebook``), without papermill's "Input Notebook" line."""
    import papermill as pm

    with papermill_info_held_back():
        return set(pm.inspect_notebook(str(path)))
