"""The captioned-shapes grammar: captions read as documented, text outside the grammar is refused."""

import pytest

from difftech_lab import scenes
from difftech_lab.errors import InvalidArgumentError


def test_the_grammar_reads_as_documented():
    spec = scenes.parse_caption("a big red circle on the left and a small blue square at the top right on a white background")
    assert spec == scenes.SceneSpec((scenes.ObjectSpec("big", "red", "circle", "left"),
                                     scenes.ObjectSpec("small", "blue", "square", "top right")), "white")


@pytest.mark.parametrize("bad", ["a red circle on the left on a white background",
                                 "a big mauve circle on the left on a white background",
                                 "a big red circle at the left on a white background",
                                 "a big red circle on the left"])
def test_text_outside_the_grammar_is_refused_with_the_bad_word(bad):
    with pytest.raises(InvalidArgumentError):
        scenes.parse_caption(bad)
