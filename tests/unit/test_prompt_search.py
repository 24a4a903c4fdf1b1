"""Prompt search: the word slots and their alternatives; coordinate ascent follows a clear signal (a brightness
scorer picks the white background), reaches a target spec, stops at the top score, at convergence and within its
budget; the Recipe replays the final prompt without searching; bad input is refused naming the fix."""

import numpy as np
import pytest
import torch

from difftech_lab.errors import InvalidArgumentError
from difftech_lab.techniques.prompt_search import Text, alternatives, slots

pytestmark = pytest.mark.usefixtures("one_torch_thread")
VOCAB = {"colour": ["red", "blue"], "position": ["left", "right"], "light": ["soft light", "studio light"]}
RUN = dict(seed=0, steps=6)


def test_slots_are_the_prompts_words_of_a_group_then_one_append_slot_per_unused_group():
    text = Text.of("A Red circle, on the left!")
    assert str(text) == "A Red circle, on the left!"
    found = slots(text, VOCAB)
    assert [(g, text.pieces[i] if i is not None else None) for g, i in found] == \
        [("colour", "Red"), ("position", "left"), ("light", None)]
    assert [str(t) for t in alternatives(text, found[0], VOCAB)] == ["A blue circle, on the left!"]
    appended = alternatives(text, found[2], VOCAB)
    assert [str(t) for t in appended] == ["A Red circle, on the left!, soft light",
                                          "A Red circle, on the left!, studio light"]
    # an append slot holding a word offers nothing and the other words; replacing keeps the other pieces
    held = appended[0].replaced(found[0][1], "blue")
    assert [str(t) for t in alternatives(held, found[2], VOCAB)] == \
        ["A blue circle, on the left!", "A blue circle, on the left!, studio light"]


def brightness(image) -> float:
    return float(np.asarray(image, dtype=float).mean() / 255)


def test_coordinate_ascent_follows_the_scorer_and_the_recipe_replays_without_it(bundled_session):
    s = bundled_session
    vocab = {"background": ["white", "gray", "black"]}
    out = s.prompt_search("a big red circle on a black background", scorer=brightness, vocabulary=vocab, seeds=1,
                          **RUN)
    history = out.recipe.params["history"]
    assert out.recipe.params["best"] == "a big red circle on a white background"
    assert [h["score"] for h in history] == sorted(h["score"] for h in history)  # never worse
    # sweep 1 tries white and gray (2 images), sweep 2 finds nothing better (2 more) and stops: converged
    per_image = 2 * RUN["steps"]
    assert history[-1]["nfe"] == (1 + 2 + 2) * per_image and out.recipe.params["scorer"] == "brightness"
    replay = s.run(out.recipe)  # no scorer needed: the recipe holds the final prompt
    assert torch.equal(replay.latents, out.latents)
    plain = s.generate("a big red circle on a white background", **RUN)
    assert torch.equal(plain.latents, out.latents)


def test_a_target_spec_is_reached_and_the_search_stops_at_the_top_score(bundled_session):
    out = bundled_session.prompt_search("a big blue circle on the right on a white background",
                                        target="a red circle on the left", seeds=2, steps=10, seed=0)
    history = out.recipe.params["history"]
    assert history[0]["score"] == 0.5 and history[-1]["score"] == 1.0
    assert out.recipe.params["best"] == "a big red circle on the left on a white background"
    # stopped as soon as the top was reached: nothing was evaluated after the change that reached it
    assert [h["score"] for h in history].count(1.0) == 1


def test_the_budget_is_never_exceeded(bundled_session):
    out = bundled_session.prompt_search("a big blue circle on the right", target="a red circle on the left",
                                        seeds=1, budget=60, **RUN)
    history = out.recipe.params["history"]
    assert history[-1]["nfe"] <= 60 and out.recipe.params["best"] == history[-1]["prompt"]


@pytest.mark.parametrize("args, options, match", [
    (("",), dict(target="a red circle"), "non-empty str"),
    (("a red circle",), dict(target="a red dog"), "unknown word 'dog'"),
    (("a red circle",), {}, "give a target scene"),
    (("a red circle",), dict(target="a red circle", scorer=brightness), "not both"),
    (("a red circle",), dict(target="a red circle", seeds=0), "seeds=0"),
    (("a red circle",), dict(target="a red circle", max_sweeps=50), "max_sweeps=50"),
    (("a red circle",), dict(target="a red circle", budget=0), "budget=0"),
    (("a red circle",), dict(target="a red circle", vocabulary={"c": []}), "group 'c'"),
    (("a red circle",), dict(target="a red circle", batch_size=2), "set seeds instead"),
])
def test_bad_input_is_refused_naming_the_fix(bundled_session, args, options, match):
    with pytest.raises(InvalidArgumentError, match=match):
        bundled_session.prompt_search(*args, steps=2, **options)
