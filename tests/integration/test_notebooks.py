"""The notebooks never rot: each one is executed top to bottom (nbclient, kernel ``python3``).

They run on the in-memory synthetic CRM, in a temporary working directory, with a time limit
per cell. They are stored without outputs (checked here too).
"""

from __future__ import annotations

import pytest

from helpers import REPO_ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 60


def test_the_three_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert {"01_exploration", "02_clv_diagnostics", "03_churn_model"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} is saved with outputs"
    assert any(c.cell_type == "markdown" for c in nb.cells)
    assert any("import crmscore" in c.source or "from crmscore" in c.source for c in nb.cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert list(tmp_path.iterdir()) == [], "notebooks must not write files"
