"""Regenerate the committed notebooks from their jupytext .py pairs: execute, then drop widget state.

    python tests/notebooks/execute.py [notebooks/NN_name.py ...]     (default: every notebooks/*.py)

nbval later compares fresh runs against these outputs, so run this on the CPU with the bundled model.
"""

import os
import sys
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def execute(py: Path) -> Path:
    nb = jupytext.read(py)
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    env_model = os.environ.pop("DIFFTECH_MODEL", None)  # outputs are recorded for the bundled model
    try:
        NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(py.parent)}}).execute()
    finally:
        if env_model is not None:
            os.environ["DIFFTECH_MODEL"] = env_model
    nb.metadata.pop("widgets", None)  # widget state (JS source, images) does not belong in the repository
    out = py.with_suffix(".ipynb")
    nbformat.write(nb, out)
    return out


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("*.py"))
    for path in paths:
        print(execute(path.resolve()))
