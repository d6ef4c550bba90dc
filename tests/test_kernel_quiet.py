"""No ERROR on the terminal of a run that went fine: a real kernel run by papermill, shut down with
and without the interrupt jupyter_client sends first; papermill's INFO lines while the runner
reads the notebooks' parameters."""

from __future__ import annotations

import logging
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from jupyter_client.manager import AsyncKernelManager

from pitools.box.kernel_quiet import inspect_parameters, quiet_shutdown

ROOT = Path(__file__).resolve().parents[1]
NOISE = "KeyboardInterrupt caught in kernel"

# The race, made certain: the kernel keeps handling papermill's last kernel_info request for a
# second after its reply went out (SIGINT armed, as while any message is handled) — what a
# loaded Pi does for a moment when it deschedules the kernel right after the reply.
SLOW_LAST_REPLY = '''
import time
_kernel = get_ipython().kernel
_info = _kernel.kernel_info_request

async def _slow_info(stream, ident, parent):
    await _info(stream, ident, parent)
    time.sleep(1.0)

_kernel.shell_handlers["kernel_info_request"] = _slow_info
'''


@pytest.fixture(scope="module")
def notebook(tmp_path_factory) -> Path:
    from pitools.box.kernelspec import ensure_kernel

    ensure_kernel()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "pitools", "display_name": "pitools", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(SLOW_LAST_REPLY), nbformat.v4.new_code_cell("print(x)")]
    path = tmp_path_factory.mktemp("quiet") / "slow_reply.ipynb"
    nbformat.write(nb, path)
    return path


def _run(notebook: Path, manager) -> Path:
    out = notebook.with_name(f"out-{manager.__name__}.ipynb")
    pm.execute_notebook(str(notebook), str(out), parameters={"x": 7}, kernel_name="pitools", progress_bar=False,
                        kernel_manager_class=manager, execution_timeout=120)
    return out


def _printed(out: Path) -> str:
    return "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", []))


def test_the_interrupt_before_shutdown_is_what_prints_the_error(notebook, capfd):
    out = _run(notebook, AsyncKernelManager)  # jupyter_client as it is: interrupt, then shut down
    err = capfd.readouterr().err  # the kernel writes to the stderr it inherited: the runner's terminal
    assert _printed(out) == "7\n"  # the notebook itself went fine
    assert NOISE in err and "ERROR" in err


def test_a_quiet_shutdown_prints_no_error(notebook, capfd):
    manager = quiet_shutdown(AsyncKernelManager)
    assert issubclass(manager, AsyncKernelManager) and manager.__name__ == "QuietShutdownAsyncKernelManager"
    out = _run(notebook, manager)
    err = capfd.readouterr().err
    assert _printed(out) == "7\n"
    assert NOISE not in err and "ERROR" not in err, err


def test_reading_the_parameters_logs_no_input_notebook_line(caplog):
    path = ROOT / "notebooks" / "05_report.ipynb"
    with caplog.at_level(logging.INFO, logger="papermill"):
        expected = set(pm.inspect_notebook(str(path)))
    assert any("Input Notebook" in r.getMessage() for r in caplog.records)  # what the terminal showed
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="papermill"):
        assert inspect_parameters(path) == expected >= {"profile", "overrides", "night", "store", "run_dir"}
        assert logging.getLogger("papermill").level == logging.INFO  # put back as it was
        logging.getLogger("papermill").warning("a warning still shows")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("papermill")] == ["a warning still shows"]
