"""Every ```python block of README.md runs, in order, in one namespace, on the bundled model.

The blocks build on each other (the first makes the ``session`` later ones use), as a reader pasting them into
one notebook would; ``display`` stands in for IPython's, which every notebook has built in.
"""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

pytestmark = pytest.mark.slow  # a handful of generations with the bundled model


def python_blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def test_the_blocks_are_found():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3 and any("MaskPainter" in b for b in blocks)
    assert python_blocks("```bash\nmake\n```\n```python\nx = 1\n```\n") == ["x = 1\n"]


def test_every_python_block_runs_in_order(tmp_path, monkeypatch):
    from difftech_lab.widgets import CurveEditor, MaskPainter

    monkeypatch.chdir(tmp_path)  # the examples save files into the working directory
    shown = []
    namespace = {"__name__": "__readme__", "display": shown.append}
    for k, block in enumerate(python_blocks(README.read_text())):
        try:
            exec(compile(block, f"README.md python block {k + 1}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"README python block {k + 1} fails:\n{block}") from error

    # the widget example shows its widgets and its results, and they are what the text says
    assert any(isinstance(x, MaskPainter) for x in shown) and any(isinstance(x, CurveEditor) for x in shown)
    painter, curve = namespace["painter"], namespace["curve"]
    assert 0 < painter.mask.mean() < 1, "inpainting needs a mask that is neither empty nor everything"
    values = curve.values
    assert values[0] == pytest.approx(9.0) and values[-1] == pytest.approx(2.0)
    assert all(a > b for a, b in zip(values, values[1:])), "the CFG curve falls step by step"
    assert namespace["falling"].recipe.settings.cfg == pytest.approx(values)
