"""Every suite notebook executes top to bottom (quick mode), so none of them rots."""
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


@pytest.mark.parametrize("suite", sorted(notebooks.SUITE_TITLES))
def test_notebook_executes(suite):
    nb = notebooks.execute(NOTEBOOKS / f"{suite}.ipynb", quick=True, timeout=300)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells and all(c.execution_count for c in code_cells)
    errors = [o for c in code_cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
