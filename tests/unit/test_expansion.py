"""Prompt expansion: deterministic rewrites per model family. A completed prompt asks for a scene the original
allows (every attribute the original names is kept); the canonical rewrite parses to the same spec; the Recipe
records the style and the expanded text and replays them; no style is the plain prompt, bit for bit."""

import pytest
import torch

from difftech_lab import scenes
from difftech_lab.conditioning.expansion import SD_STYLES, expand, styles
from difftech_lab.errors import InvalidArgumentError
from difftech_lab.training.dataset import held_out_free_prompts

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FREE = [text for n in (1, 2, 3) for text, _ in held_out_free_prompts(n, 40)]


def _allows(named: scenes.SceneSpec, complete: scenes.SceneSpec) -> bool:
    same = lambda a, b: a is None or a == b  # noqa: E731
    return len(named.objects) == len(complete.objects) and same(named.background, complete.background) and all(
        same(getattr(o, k), getattr(c, k)) for o, c in zip(named.objects, complete.objects)
        for k in ("size", "colour", "shape", "position"))


@pytest.mark.parametrize("text", FREE)
def test_complete_names_everything_and_keeps_what_the_prompt_names(text):
    named = scenes.parse_caption(text)
    out, negative = expand(text, "complete", "tiny-shapes")
    full = scenes.parse_caption(out)
    assert full.complete and _allows(named, full) and negative == ""
    assert out == scenes.caption(full)  # the grammar's own words and order
    if all(o.position is None for o in named.objects):  # positions the model knows: two cells apart
        assert all(scenes.far_apart(a.position, b.position) for k, a in enumerate(full.objects)
                   for b in full.objects[k + 1:])


@pytest.mark.parametrize("text", FREE[:40:3])
def test_canonical_keeps_the_spec_exactly(text):
    assert scenes.parse_caption(expand(text, "canonical", "tiny-shapes")[0]) == scenes.parse_caption(text)


def test_fill_rule_examples():
    assert expand("red circle, left", "complete", "tiny-shapes")[0] == \
        "a big red circle on the left on a white background"
    assert expand("a cyan star on black", "complete", "tiny-shapes")[0] == \
        "a big cyan star in the centre on a black background"
    assert expand("a red shape and a star", "canonical", "tiny-shapes")[0] == "a red shape and a star"


def test_sd_styles_wrap_the_prompt_and_add_their_negative():
    for name, style in SD_STYLES.items():
        prompt, negative = expand(" a cat ", name, "sd", "ugly")
        assert "a cat" in prompt and prompt != "a cat" and negative == f"ugly, {style.negative}"
    assert expand("a cat", "quality", "sd")[1] == SD_STYLES["quality"].negative
    assert styles("tiny-shapes") == ["canonical", "complete"]


@pytest.mark.parametrize("args, match", [
    (("a cat", "quality", "tiny-shapes"), "not one of 'tiny-shapes'"),
    (("a dog on the left", "complete", "tiny-shapes"), "unknown word 'dog'"),
    (("a cat", "vaporwave", "sd"), "style 'vaporwave'"),
    (("a cat", "quality", "sd15"), "model family 'sd15'"),
])
def test_bad_styles_are_refused_naming_the_choices(args, match):
    with pytest.raises(InvalidArgumentError, match=match):
        expand(*args)


def test_a_style_is_recorded_and_replays_and_no_style_is_the_plain_prompt(bundled_session):
    s = bundled_session
    run = dict(seed=4, steps=6)
    styled = s.generate("red circle, left", style="complete", **run)
    assert styled.recipe.params["expanded"] == ["a big red circle on the left on a white background", ""]
    direct = s.generate("a big red circle on the left on a white background", **run)
    assert torch.equal(styled.latents, direct.latents)
    assert torch.equal(s.run(styled.recipe).latents, styled.latents)
    plain = s.generate("red circle, left", **run)
    assert plain.recipe.params["style"] is None and not torch.equal(plain.latents, styled.latents)
    assert s.prompt_styles() == ["canonical", "complete"]
    assert s.expand_prompt("red circle, left", "canonical") == ("a red circle on the left", "")


def test_an_sd_model_gets_the_sd_vocabulary(tiny_session):
    out = tiny_session.generate("a red star", style="quality", seed=0, steps=2, width=32, height=32)
    assert out.recipe.params["expanded"] == list(expand("a red star", "quality", "sd"))
    with pytest.raises(InvalidArgumentError, match="style 'complete'"):
        tiny_session.generate("a red star", style="complete", steps=2, width=32, height=32)
