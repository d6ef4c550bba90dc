"""The notebooks run headless through papermill on tiny real data, as the nightly run will."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parents[1]


def parameters_cell(nb) -> str:
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    return tagged[0].source


@pytest.mark.slow
def test_universe_notebook_executes_with_parameters(demo_store, tmp_path):
    src = ROOT / "notebooks" / "00_universe.ipynb"
    assert "profile" in parameters_cell(nbformat.read(src, as_version=4))
    out = tmp_path / "00_universe.ipynb"
    pm.execute_notebook(str(src), str(out), parameters={"profile": "ci", "store": str(demo_store), "max_symbols": 10},
                        cwd=str(ROOT), kernel_name="python3", progress_bar=False, execution_timeout=300)
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "10 symbols" in text or "× 10 symbols" in text
    mimes = {k for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) for k in o.get("data", {})}
    assert "application/vnd.plotly.v1+json" in mimes
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
