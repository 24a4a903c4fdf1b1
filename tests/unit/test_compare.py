"""compare(): paired prompts × seeds per variant, NFE per image, mean ± standard error, aligned table."""

import importlib
from types import SimpleNamespace

import numpy as np
import pytest

from difftech_lab import InvalidArgumentError
from difftech_lab.automation import compare


def brightness(images, prompts):
    return {"bright": [float(np.asarray(im).mean()) / 255 for im in images]}


def test_variants_see_the_same_prompts_and_seeds(tiny_session):
    table = compare(tiny_session, ["a", "b"], {"cfg 1": {"cfg": 1.0}, "cfg 5": {"cfg": 5.0}, "again": {"cfg": 1.0}},
                    seeds=range(3), metric=brightness, steps=2, width=32, height=32, progress=False)
    rows = {row.name: row for row in table.rows}
    assert [row.n for row in table.rows] == [6, 6, 6]
    assert rows["cfg 1"].nfe == 2 and rows["cfg 5"].nfe == 4  # cfg 1 skips the unconditional pass
    assert rows["cfg 1"].metrics == rows["again"].metrics  # same inputs, same numbers
    mean, se = rows["cfg 5"].metrics["bright"]
    values = brightness([im for r in table.results["cfg 5"] for im in r.images], None)["bright"]
    assert mean == pytest.approx(np.mean(values)) and se == pytest.approx(np.std(values, ddof=1) / np.sqrt(6))
    lines = str(table).splitlines()
    assert lines[0].split() == ["variant", "n", "NFE", "bright"] and len(lines) == 5


def test_seeds_must_be_consecutive(tiny_session):
    with pytest.raises(InvalidArgumentError, match="consecutive"):
        compare(tiny_session, ["a"], {"x": {}}, seeds=[0, 2], metric=brightness)


class RecordingSession:
    """Stands in for Session.generate: one grey image per seed, and the options of every call."""

    def __init__(self):
        self.calls = []

    def generate(self, prompt, **options):
        from PIL import Image

        self.calls.append(options)
        return SimpleNamespace(images=[Image.new("RGB", (8, 8), "gray")] * options["batch_size"], nfe=1,
                               timings={"total": 0.01})


@pytest.fixture
def bars(monkeypatch):
    """The progress bars compare makes, kept to read their counts after they close."""
    compare_module = importlib.import_module("difftech_lab.automation.compare")  # the package re-exports the function
    made = []

    class Kept(compare_module.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.shown = not kwargs.get("disable")  # tqdm sets .disable on close
            made.append(self)

    monkeypatch.setattr(compare_module, "tqdm", Kept)
    return made


def test_one_progress_bar_counts_variants_times_prompts(bars, capsys):
    session = RecordingSession()
    compare(session, ["a", "b", "c"], {"x": {}, "y": {"cfg": 2.0}}, seeds=range(2), metric=brightness)
    (bar,) = bars
    assert (bar.total, bar.n, bar.shown) == (6, 6, True)
    assert "compare" in capsys.readouterr().err  # outside a notebook tqdm writes to stderr
    assert [call["progress"] for call in session.calls] == [False] * 6, "no bar per generation under compare's"


def test_progress_false_shows_no_bar(bars, capsys):
    session = RecordingSession()
    compare(session, ["a"], {"x": {}}, metric=brightness, progress=False)
    assert not bars[0].shown and capsys.readouterr().err == ""
    assert session.calls[0]["progress"] is False


def test_a_variant_may_run_inside_patches(tiny_session):
    table = compare(tiny_session, ["a"], {"plain": {}, "pag": {"patches": {"pag": 2.0}}}, seeds=range(2),
                    metric=brightness, steps=2, width=32, height=32, cfg=3.0, progress=False)
    rows = {row.name: row for row in table.rows}
    assert rows["plain"].nfe == 4 and rows["pag"].nfe == 6  # one perturbed forward per step
    assert table.results["pag"][0].recipe.patches == [{"name": "pag", "options": {"scale": 2.0, "blocks": ["mid"]}}]
    assert table.results["plain"][0].recipe.patches == [] and not tiny_session.active_patches
    assert rows["plain"].seconds > 0 and "×1.00" in table.timing().splitlines()[0]
