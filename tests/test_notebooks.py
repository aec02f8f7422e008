"""Every suite notebook executes top to bottom (quick mode), so none of them rots, and carries its
figures in its outputs (inline, not drawn on a backend that shows nothing)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _load_builder():
    """notebooks/build.py is a repo script (the notebooks are files of the checkout), not a package module."""
    spec = importlib.util.spec_from_file_location("neurocodec_notebooks_build", NOTEBOOKS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


notebooks = _load_builder()


def test_stored_notebooks_match_the_builder_and_have_no_outputs(tmp_path):
    built = {p.name: json.loads(p.read_text()) for p in notebooks.build(tmp_path)}
    for name, nb in built.items():
        on_disk = json.loads((NOTEBOOKS / name).read_text())
        assert [c["source"] for c in on_disk["cells"]] == [c["source"] for c in nb["cells"]], name
        assert all(not c.get("outputs") for c in on_disk["cells"] if c["cell_type"] == "code")


def test_notebooks_draw_inline(tmp_path):
    for path in notebooks.build(tmp_path):
        cells = json.loads(path.read_text())["cells"]
        source = "\n".join(c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in cells)
        assert "%matplotlib inline" in source and 'matplotlib.use("Agg")' not in source, path.name
        assert "np.mean" not in source, path.name  # tables list RD points, never their average


@pytest.mark.parametrize("suite", sorted(notebooks.SUITE_TITLES))
def test_notebook_executes(suite):
    nb = notebooks.execute(NOTEBOOKS / f"{suite}.ipynb", quick=True, timeout=300)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells and all(c.execution_count for c in code_cells)
    errors = [o for c in code_cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert notebooks.embedded_figures(nb), f"{suite}: no figure in the outputs"
    markdown = "\n".join(o["data"]["text/markdown"] for c in code_cells for o in c.get("outputs", [])
                         if "text/markdown" in o.get("data", {}))
    if suite in ("video", "image"):  # the committed results: per-point tables and BD tables per dataset
        assert "one row per RD point" in markdown and f"**BD on {suite} / " in markdown
