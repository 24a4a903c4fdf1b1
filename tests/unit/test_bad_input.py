"""Bad input a new user tries: each gets a typed error naming the value and the fix, and the Session then
makes a successful call. The README's reliability table lists the same cases."""

import numpy as np
import pytest
import torch

from difftech_lab import InvalidArgumentError, ResourceError, ShapeError, UnknownNameError

FAST = dict(steps=2, width=32, height=32, progress=False)


def _still_usable(session):
    assert session.generate("ok", seed=0, **FAST).images


@pytest.mark.parametrize("options, error, match", [
    (dict(width=100000, height=100000), ResourceError, r"100000×100000 .* needs about .* free; generate at most"),
    (dict(width=0), InvalidArgumentError, "width 0 is not a positive multiple of 4"),
    (dict(height=-32), InvalidArgumentError, "height -32 is not a positive multiple"),
    (dict(width=32.0), InvalidArgumentError, "width 32.0 is not a positive multiple"),
    (dict(seed=2**70), InvalidArgumentError, r"seed 1180591620717411303424 must be an integer in \[0, 2\*\*63"),
    (dict(seed=-1), InvalidArgumentError, "seed -1 must be an integer"),
    (dict(seed=1.5), InvalidArgumentError, "seed 1.5 must be an integer"),
    (dict(sampler_options={"foo": 1}), InvalidArgumentError, "sampler 'euler' has no option 'foo'; its options are"),
    (dict(sampler="edm", sampler_options={"S_churn": 1}), InvalidArgumentError, "now spelled 's_churn'"),
    (dict(cfg=[1, 2, 3], steps=5), InvalidArgumentError, "cfg curve has 3 values but the run has 5 steps"),
    (dict(cfg="7"), InvalidArgumentError, "cfg '7' must be a number"),
    (dict(cfg=float("nan")), InvalidArgumentError, "cfg value nan is outside"),
    (dict(cfg=-2), InvalidArgumentError, "cfg value -2.0 is outside"),
    (dict(cfg_rescale=5), InvalidArgumentError, r"cfg_rescale value 5.0 is outside \[0.0, 1.0\]"),
    (dict(steps=0), InvalidArgumentError, "steps 0 must be a positive integer"),
    (dict(batch_size=True), InvalidArgumentError, "batch_size True must be a positive integer"),
    (dict(threshold="otsu"), UnknownNameError, "threshold 'otsu'"),
    (dict(threshold={"kind": "dynamic", "percentile": 3}), InvalidArgumentError, "percentile must be in"),
    (dict(schedule="karras", schedule_options={"rhoo": 3}), InvalidArgumentError, "schedule 'karras' does not take"),
    (dict(stepz=3), InvalidArgumentError, "txt2img has no argument 'stepz'"),
    (dict(callback=3), InvalidArgumentError, "callback 3 is not callable"),
])
def test_bad_generation_settings(tiny_session, options, error, match):
    with pytest.raises(error, match=match):
        tiny_session.generate("x", **{**FAST, **options})
    _still_usable(tiny_session)


def test_bad_images_masks_and_noise(tiny_session):
    image = tiny_session.generate("x", seed=1, **FAST).images[0]
    with pytest.raises(InvalidArgumentError, match="image array holds 3072 NaN/inf values"):
        tiny_session.img2img(np.full((32, 32, 3), np.nan, np.float32), "x", steps=2, progress=False)
    with pytest.raises(InvalidArgumentError, match="the mask is all zero"):
        tiny_session.inpaint(image, np.zeros((32, 32), np.float32), "x", steps=2, progress=False)
    with pytest.raises(InvalidArgumentError, match=r"mask values span \[2, 2\]; they must lie in \[0, 1\]"):
        tiny_session.inpaint(image, np.full((32, 32), 2.0), "x", steps=2, progress=False)
    with pytest.raises(InvalidArgumentError, match="img2img takes its size from the image"):
        tiny_session.img2img(image, "x", width=64, steps=2, progress=False)
    with pytest.raises(InvalidArgumentError, match="mask_blur -1"):
        tiny_session.inpaint(image, np.ones((32, 32)), "x", mask_blur=-1, steps=2, progress=False)
    with pytest.raises(InvalidArgumentError, match="noise must be a torch.Tensor of shape"):
        tiny_session.generate("x", noise=np.zeros((1, 4, 16, 16)), **FAST)
    with pytest.raises(ShapeError, match=r"noise has shape \(1, 4, 8, 8\)"):
        tiny_session.generate("x", noise=torch.zeros(1, 4, 8, 8), **FAST)
    with pytest.raises(InvalidArgumentError, match="noise holds NaN"):
        tiny_session.generate("x", noise=torch.full((1, 4, 16, 16), float("nan")), **FAST)
    with pytest.raises(InvalidArgumentError, match="cannot read an image from 'missing.png'"):
        tiny_session.img2img("missing.png", "x", steps=2, progress=False)
    _still_usable(tiny_session)


def test_bad_recipes_and_run_options(tiny_session):
    from difftech_lab import Recipe

    with pytest.raises(InvalidArgumentError, match="recipe is not valid JSON"):
        tiny_session.run("{not json")
    with pytest.raises(InvalidArgumentError, match="recipe version 99"):
        tiny_session.run({"version": 99})
    recipe = tiny_session.generate("x", seed=0, **FAST).recipe
    with pytest.raises(InvalidArgumentError, match=r"run\(\) takes only run options"):
        tiny_session.run(recipe, steps=5)
    assert isinstance(Recipe.from_json(recipe.to_json()), Recipe)
    _still_usable(tiny_session)
