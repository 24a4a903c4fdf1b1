"""The shapes world's language: canonical captions, free phrasing, and text outside the world refused."""

import numpy as np
import pytest

from difftech_lab import scenes
from difftech_lab.errors import InvalidArgumentError
from difftech_lab.training import dataset

O, S = scenes.ObjectSpec, scenes.SceneSpec


def test_the_canonical_grammar_reads_as_documented():
    spec = scenes.parse_caption("a big red circle on the left and a small blue square at the top right on a white background")
    assert spec == S((O("big", "red", "circle", "left"), O("small", "blue", "square", "top right")), "white")
    assert spec.complete and scenes.caption(spec) == "a big red circle on the left and a small blue square at the top right on a white background"


@pytest.mark.parametrize("text, spec", [
    ("red circle, left", S((O(None, "red", "circle", "left"),), None)),
    ("a blue square on a grey background", S((O(None, "blue", "square", None),), "gray")),
    ("A big Yellow Star at the Top", S((O("big", "yellow", "star", "top"),), None)),
    ("a large red shape in the middle", S((O("big", "red", None, "centre"),), None)),
    ("an orange triangle at the center, black background", S((O(None, "orange", "triangle", "centre"),), "black")),
    ("little green circle, top left, and a star at the bottom right on white",
     S((O("small", "green", "circle", "top left"), O(None, None, "star", "bottom right")), "white")),
    ("circle", S((O(None, None, "circle", None),), None)),
    ("a red circle and a red circle", S((O(None, "red", "circle", None), O(None, "red", "circle", None)), None)),
])
def test_free_phrasing_reads_what_it_names_and_leaves_the_rest_open(text, spec):
    assert scenes.parse_caption(text) == spec
    assert not spec.complete


def test_every_free_caption_the_generator_writes_parses_back_to_what_it_names():
    rng = np.random.default_rng(5)
    dropped = {"size": 0, "position": 0, "background": 0}
    for _ in range(3000):
        spec = dataset.random_spec(rng)
        text, named, ends = scenes.free_caption(spec, rng)
        assert scenes.parse_caption(text) == named
        assert len(ends) == len(spec.objects) and ends == sorted(ends) and ends[-1] <= len(scenes.tokens(text))
        for want, said in zip(spec.objects, named.objects):  # what the caption names is true of the scene
            assert all(getattr(said, a) in (None, getattr(want, a)) for a in ("size", "colour", "shape", "position"))
            assert said.colour or said.shape
            dropped["size"] += said.size is None
            dropped["position"] += said.position is None
        dropped["background"] += named.background is None
    assert all(300 < v for v in dropped.values()), dropped  # each attribute is left open often


def test_free_captions_can_leave_attributes_out_at_other_rates():
    """Training may leave some attributes out more often than the evaluation's grammar; no override is the grammar
    itself, and a rate of 0 or 1 decides alone without changing the other decisions for that object."""
    specs = [dataset.random_spec(np.random.default_rng(i)) for i in range(300)]
    plain = [scenes.free_caption(s, np.random.default_rng(i)) for i, s in enumerate(specs)]
    same = [scenes.free_caption(s, np.random.default_rng(i), {}) for i, s in enumerate(specs)]
    assert [c[0] for c in plain] == [c[0] for c in same]
    always = [scenes.free_caption(s, np.random.default_rng(i), {"position": 1.0}) for i, s in enumerate(specs)]
    never = [scenes.free_caption(s, np.random.default_rng(i), {"position": 0.0}) for i, s in enumerate(specs)]
    assert all(o.position is None for _, named, _ in always for o in named.objects)
    assert all(o.position is not None for _, named, _ in never for o in named.objects)
    for (_, a, _), (_, b, _) in zip(plain, always):  # the first object's other attributes are left out as before
        assert (a.objects[0].size, a.objects[0].colour, a.objects[0].shape) == \
            (b.objects[0].size, b.objects[0].colour, b.objects[0].shape)
    with pytest.raises(InvalidArgumentError, match="may name size"):
        scenes.free_caption(specs[0], np.random.default_rng(0), {"where": 0.5})


def test_scene_key_ignores_object_order():
    a, b = O("big", "red", "circle", "left"), O("small", "blue", "star", "right")
    assert scenes.scene_key(S((a, b), "white")) == scenes.scene_key(S((b, a), "white"))
    assert scenes.scene_key(S((a, b), "white")) != scenes.scene_key(S((a, b), "black"))


@pytest.mark.parametrize("bad", ["a big mauve circle on the left on a white background",
                                 "a big red circle on the left on a white background please",
                                 "a big on the left", "on a white background", ""])
def test_text_outside_the_world_is_refused_with_the_reason(bad):
    with pytest.raises(InvalidArgumentError):
        scenes.parse_caption(bad)
