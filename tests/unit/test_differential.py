"""Differential diffusion against its oracles: a constant map is img2img at that strength, the keep-map
convention is the same run, kept pixels stay, and change grows with strength."""

import numpy as np
import pytest
import torch

from difftech_lab import InvalidArgumentError, Recipe
from difftech_lab.techniques.differential import schedule_fraction


def test_schedule_fraction_is_the_step_position_of_a_sigma():
    sigmas = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.0])
    assert [schedule_fraction(sigmas, s) for s in (12.0, 10.0, 5.0, 3.5, 1.0, 0.5)] == \
        [0.0, 0.0, 0.25, 0.375, 0.75, 0.875]


@pytest.fixture(scope="module")
def image(tiny_session):
    return tiny_session.generate("a square", seed=4, steps=3, width=32, height=32, progress=False).images[0]


@pytest.mark.parametrize("c", [0.5, 1.0])
def test_a_constant_map_is_img2img_at_that_strength(tiny_session, image, c):
    options = dict(seed=5, steps=10, progress=False)
    plain = tiny_session.img2img(image, "a star", strength=c, **options)
    diff = tiny_session.differential(image, np.full((32, 32), c, np.float32), "a star", composite=False, **options)
    # the held steps move x along the original's noising path exactly; only float rounding separates the two
    torch.testing.assert_close(diff.latents, plain.latents, atol=1e-4, rtol=1e-4)


def test_the_keep_map_convention_is_the_same_run(tiny_session, image):
    strength = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))
    a = tiny_session.differential(image, strength, "a star", seed=2, steps=4, progress=False)
    b = tiny_session.differential(image, prompt="a star", keep_map=1 - strength, seed=2, steps=4, progress=False)
    assert torch.equal(a.latents, b.latents)
    assert torch.equal(tiny_session.run(Recipe.from_json(a.recipe.to_json())).latents, a.latents)


@pytest.mark.parametrize("sampler", ["heun", "restart", "euler_ancestral"])
def test_every_sampler_keeps_the_zero_strength_region(tiny_session, image, sampler):
    strength = np.zeros((32, 32), np.float32)
    strength[:, :16] = 1.0
    result = tiny_session.differential(image, strength, "a star", seed=1, steps=4, sampler=sampler,
                                       composite=False, progress=False)
    kept = tiny_session.encode(image)[..., 8:]
    torch.testing.assert_close(result.latents[..., 8:], kept, atol=1e-5, rtol=0)
    assert not torch.allclose(result.latents[..., :8], tiny_session.encode(image)[..., :8], atol=1e-2)


def test_pixels_where_the_map_is_zero_are_the_original_and_change_grows_with_strength():
    from difftech_lab import Session

    session = Session(progress=False)
    base = session.generate("a big red circle in the centre on a white background", seed=3, steps=12)
    prompt = "a big blue square in the centre on a black background"
    before = np.asarray(base.images[0], dtype=np.int16)

    def change(strength):
        result = session.differential(base.images[0], strength, prompt, seed=3, steps=12)
        return np.abs(np.asarray(result.images[0], dtype=np.int16) - before)

    halves = np.zeros((64, 64), np.float32)
    halves[:, 32:] = 1.0
    diff = change(halves)
    assert (diff[:, :29] == 0).all()  # strength 0, outside the blur band (2 px at 64 px): untouched
    assert diff[:, 36:].mean() > 30  # strength 1: regenerated under the new prompt
    # the paper's strength fan: more strength, more change (the whole image at each constant strength); between
    # nearby strengths that both keep the object the change may stay level, so it must never shrink by more than
    # half a level of 255, and grow from the light end to the strong one
    fan = [change(np.full((64, 64), c, np.float32)).mean() for c in (0.05, 0.3, 0.45, 0.6)]
    assert all(b > a - 0.5 for a, b in zip(fan, fan[1:])) and fan[0] < 5 < fan[1] and fan[-1] > 100, fan


def test_bad_maps(tiny_session, image):
    with pytest.raises(InvalidArgumentError, match="exactly one of strength_map"):
        tiny_session.differential(image, prompt="x", steps=2, progress=False)
    with pytest.raises(InvalidArgumentError, match="exactly one of strength_map"):
        tiny_session.differential(image, np.ones((32, 32)), "x", keep_map=np.ones((32, 32)), steps=2, progress=False)
    with pytest.raises(InvalidArgumentError, match=r"mask values span \[-1, -1\]"):
        tiny_session.differential(image, prompt="x", keep_map=np.full((32, 32), 2.0), steps=2, progress=False)
    assert tiny_session.differential(image, np.ones((32, 32)), "x", steps=2, progress=False).images
