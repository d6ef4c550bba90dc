"""The Jupyter kernel the notebooks run on: ``pitools``, this environment's Python.

Jupyter's stock ``python3`` kernel starts whatever ``python`` is first on PATH — under
systemd, or in a JupyterLab started from another environment, that is not the
interpreter pitools is installed in. ``ensure_kernel`` writes a kernelspec whose argv is
the absolute path of this interpreter into this environment's ``share/jupyter/kernels``,
where papermill and JupyterLab (started from this environment) find it.

>>> from pitools.box.kernelspec import ensure_kernel
>>> ensure_kernel()                   # doctest: +SKIP
'pitools'
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pitools.data.atomic import write_text_atomic

__all__ = ["KERNEL_NAME", "ensure_kernel", "kernel_dir"]

KERNEL_NAME = "pitools"


def kernel_dir(prefix: str | Path | None = None) -> Path:
    """Where the ``pitools`` kernelspec lives (inside the environment at `prefix`)."""
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME


def ensure_kernel(prefix: str | Path | None = None) -> str:
    """Install (or refresh) the ``pitools`` kernelspec; returns its name. Idempotent."""
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (pitools)",
        "language": "python",
        "metadata": {"debugger": True},
        "kernel_protocol_version": "5.5",
    }
    path = kernel_dir(prefix) / "kernel.json"
    text = json.dumps(spec, indent=1) + "\n"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    return KERNEL_NAME
