"""Committed notebooks: paired with jupytext, free of widget state, and first cell selects the model."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_widget_state_in_metadata(path):
    nb = nbformat.read(path, as_version=4)
    assert "widgets" not in nb.metadata, f"{path.name} carries widget state; clear its metadata before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_paired_with_jupytext_and_in_sync(path):
    import jupytext

    paired = path.with_suffix(".py")
    assert paired.is_file(), f"{path.name} has no jupytext .py pair"
    ipynb_cells = [c.source.strip() for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    py_cells = [c.source.strip() for c in jupytext.read(paired).cells if c.cell_type == "code"]
    assert ipynb_cells == py_cells, f"{paired.name} and {path.name} differ: run `jupytext --sync {path}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_selects_model(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "DIFFTECH_MODEL" in first.source, f"{path.name}: the first code cell must read DIFFTECH_MODEL"
