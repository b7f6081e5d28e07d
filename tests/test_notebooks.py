"""Execute every notebook in notebooks/ with nbclient (short chains via BAYES_OSTEO_FAST=1)."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch, tmp_path):
    monkeypatch.setenv("BAYES_OSTEO_FAST", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # the narrated analyses show figures and tables
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was displayed"
    assert any("text/html" in o.get("data", {}) for o in outputs), "no rich (HTML) table was displayed"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def test_notebooks_only_import_the_package():
    allowed = {"os", "warnings", "tempfile", "numpy", "pandas", "matplotlib", "bayes_osteo"}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            for line in cell.source.splitlines():
                words = line.split()
                if words[:1] in (["import"], ["from"]):
                    root = words[1].split(".")[0]
                    assert root in allowed, f"{path.name}: imports {root}"
    assert {p.stem for p in NOTEBOOKS} >= {"01_cohort_cox", "02_meta_analysis", "03_propensity",
                                           "04_meta_informed_cohort"}
