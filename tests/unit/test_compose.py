"""Masked latent composition against its oracles: one part over the whole canvas is that part's run branched to the
finishing prompt at at_step (plain generation when the prompts agree), at_step 0 is plain generation, masks that
partition the canvas keep each source exactly in its region, the weights sum to 1, the Recipe replays the run,
and bad input is refused by name."""

import numpy as np
import pytest
import torch

from difftech_lab import Recipe
from difftech_lab.errors import InvalidArgumentError, ShapeError
from difftech_lab.techniques.compose import composition_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RUN = dict(seed=3, steps=3, width=32, height=32, progress=False)
FULL = np.ones((32, 32), np.float32)
LEFT = np.zeros((32, 32), np.float32)
LEFT[:, :16] = 1.0


def test_one_part_over_the_canvas_with_the_background_prompt_is_plain_generation(tiny_session):
    plain = tiny_session.generate("a star", **RUN)
    for at in (1, 2, 3):
        composed = tiny_session.compose([("a star", FULL)], "a star", at_step=at, **RUN)
        assert torch.equal(composed.latents, plain.latents), at


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral"])
def test_one_part_over_the_canvas_is_its_run_branched_to_the_finishing_prompt(tiny_session, sampler):
    options = dict(RUN, steps=4, sampler=sampler)
    part = tiny_session.generate("a circle", keep_trajectory=True, **options)
    branched = tiny_session.branch(part, 2, prompt="a star")  # the same segment restart: sampler state afresh
    composed = tiny_session.compose([("a circle", FULL)], "a star", at_step=2, **options)
    assert torch.equal(composed.latents, branched.latents)
    assert composed.nfe == part.nfe  # the part's steps, then the rest: the background, covered, never runs


def test_at_step_zero_is_plain_generation_with_the_finishing_prompt(tiny_session):
    composed = tiny_session.compose([("a circle", LEFT)], "a star", at_step=0, **RUN)
    assert torch.equal(composed.latents, tiny_session.generate("a star", **RUN).latents)
    finished = tiny_session.compose([("a circle", LEFT)], "a star", at_step=0, finish_prompt="a square", **RUN)
    assert torch.equal(finished.latents, tiny_session.generate("a square", **RUN).latents)


def test_composing_at_the_last_step_keeps_each_source_exactly_in_its_region(tiny_session):
    pasted = tiny_session.compose([("a circle", LEFT), ("a square", 1 - LEFT)], "a star", at_step=3, **RUN)
    circle, square = (tiny_session.generate(p, **RUN) for p in ("a circle", "a square"))
    half = pasted.latents.shape[-1] // 2
    assert torch.equal(pasted.latents[..., :half], circle.latents[..., :half])
    assert torch.equal(pasted.latents[..., half:], square.latents[..., half:])
    assert pasted.nfe == circle.nfe + square.nfe and len(pasted.images) == 1


def test_uncovered_area_comes_from_the_background(tiny_session):
    pasted = tiny_session.compose([("a circle", LEFT)], "a star", at_step=3, **RUN)
    star = tiny_session.generate("a star", **RUN)
    half = pasted.latents.shape[-1] // 2
    assert torch.equal(pasted.latents[..., half:], star.latents[..., half:])


def test_weights_are_normalised_where_parts_overlap_and_sum_to_one():
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))
    top = np.zeros((32, 32), np.float32)
    top[:16] = 0.75
    background, (w_ramp, w_top) = composition_weights([ramp, top], 8, 8)
    total = background + w_ramp + w_top
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-6, rtol=0)
    r, t = torch.nn.functional.avg_pool2d(torch.from_numpy(ramp)[None, None], 4), torch.full((1, 1, 8, 8), 0.75)
    t[..., 4:, :] = 0.0
    over = (r + t) > 1
    torch.testing.assert_close(w_ramp[over], (r / (r + t))[over])  # scaled to sum to 1 where they overlap
    torch.testing.assert_close(w_ramp[~over], r[~over])  # kept as they are elsewhere
    torch.testing.assert_close(background[~over], (1 - r - t)[~over])
    assert float(background[over].abs().max()) < 1e-6
    only, (full,) = composition_weights([FULL], 4, 4)
    assert torch.equal(full, torch.ones(1, 1, 4, 4)) and torch.equal(only, torch.zeros(1, 1, 4, 4))


def test_the_recipe_replays_bit_for_bit_and_records_the_default_step(tiny_session):
    soft = np.clip(np.tile(np.linspace(-0.5, 1.5, 32, dtype=np.float32), (32, 1)), 0, 1)
    result = tiny_session.compose([("a circle", soft), ("a square", LEFT)], "a star", **dict(RUN, steps=5),
                                  batch_size=2)
    assert result.recipe.technique == "compose" and result.recipe.params["at_step"] == 2  # 40% of 5 steps
    again = tiny_session.run(Recipe.from_json(result.recipe.to_json()))
    assert torch.equal(again.latents, result.latents) and again.nfe == result.nfe
    cfg_rows = 2  # the unconditional and the conditional prediction per step
    assert result.nfe == cfg_rows * (3 * 2 + 5 - 2)  # background and two parts for 2 steps, then 3 steps


def test_a_branch_of_a_composition_changes_the_finishing_prompt(tiny_session):
    parts = [("a circle", LEFT)]
    parent = tiny_session.compose(parts, "a star", at_step=1, keep_trajectory=True, **RUN)
    child = tiny_session.branch(parent, 1, finish_prompt="a square")
    direct = tiny_session.compose(parts, "a star", at_step=1, finish_prompt="a square", **RUN)
    assert torch.equal(child.latents, direct.latents)
    assert torch.equal(tiny_session.run(child.recipe).latents, child.latents)


@pytest.mark.parametrize("parts, options, error, match", [
    ([("a circle", np.ones((16, 16), np.float32))], {}, ShapeError, r"part 0 .*32×32"),
    ([("a circle", np.full((32, 32), 1.5, np.float32))], {}, InvalidArgumentError, r"\[0, 1\]"),
    ([("a circle", np.zeros((32, 32), np.float32))], {}, InvalidArgumentError, "all-zero mask"),
    ([("  ", LEFT)], {}, InvalidArgumentError, "part 0's prompt is empty"),
    ([("a circle", LEFT)], {"background": ""}, InvalidArgumentError, "background is empty"),
    ([("a circle", LEFT)], {"at_step": 4}, InvalidArgumentError, r"at_step=4 is outside 0\.\.3"),
    ([("a circle", LEFT)], {"at_step": -1}, InvalidArgumentError, "at_step=-1"),
    ([("a circle", LEFT)], {"at_step": 1.5}, InvalidArgumentError, "at_step=1.5"),
    ([], {}, InvalidArgumentError, "non-empty list"),
    ([("a circle", LEFT, 2.0)], {}, InvalidArgumentError, r"\(prompt, mask\) pair"),
    ([(3, LEFT)], {}, InvalidArgumentError, "part 0's prompt must be a str"),
    ([("a circle", LEFT)], {"finish_prompt": ""}, InvalidArgumentError, "finish_prompt is empty"),
])
def test_bad_input_is_refused(tiny_session, parts, options, error, match):
    options = {"background": "a star", **options}
    with pytest.raises(error, match=match):
        tiny_session.compose(parts, options.pop("background"), **options, **RUN)
