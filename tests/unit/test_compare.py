"""compare(): paired prompts × seeds per variant, NFE per image, mean ± standard error, aligned table."""

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
