"""Recipes and PNGs written by the first release (version-1 recipes) still load and reproduce, and inpainting
keeps what it should keep."""

import os
from pathlib import Path

import numpy as np
import pytest

from difftech_lab import Session, read_recipe
from difftech_lab.images import blur_mask

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(scope="module")
def bundled():
    return Session(progress=False)


# The first bundled model's weights are not shipped with later releases; where a copy is at hand (the folder
# the bundled model was fine-tuned from), the version-1 PNGs must reproduce on it bit for bit.
V1_MODEL = Path(os.environ.get("DIFFTECH_V1_MODEL", Path(__file__).parents[2] / "runs" / "v1"))


@pytest.mark.parametrize("name, technique", [("v1_txt2img.png", "txt2img"), ("v1_inpaint.png", "inpaint")])
def test_a_version_1_png_loads_and_runs_on_todays_model_with_a_warning_naming_both(bundled, name, technique):
    from difftech_lab import ModelMismatchWarning

    recipe = read_recipe(FIXTURES / name)
    assert recipe.version == 2 and recipe.technique == technique and recipe.model_hash == "9c98aa7f3943"
    with pytest.warns(ModelMismatchWarning, match=rf"weights 9c98aa7f3943\).*weights {bundled.model.identity}"):
        result = bundled.run(recipe)
    assert result.images[0].size == (recipe.settings.width, recipe.settings.height)


@pytest.mark.skipif(not (V1_MODEL / "model_index.json").exists(),
                    reason="the first bundled model's weights are not at hand (set DIFFTECH_V1_MODEL)")
@pytest.mark.parametrize("name, technique", [("v1_txt2img.png", "txt2img"), ("v1_inpaint.png", "inpaint")])
def test_a_version_1_png_reproduces_its_image_on_the_first_model(name, technique):
    from PIL import Image

    recipe = read_recipe(FIXTURES / name)
    made = np.asarray(Session.load(V1_MODEL, progress=False).run(recipe).images[0], dtype=np.int16)
    saved = np.asarray(Image.open(FIXTURES / name).convert("RGB"), dtype=np.int16)
    # bit for bit on the machine that wrote it; other CPUs' float kernels may round a pixel by a level
    assert np.abs(made - saved).max() <= 1 and (made == saved).mean() > 0.99


def test_a_version_1_branch_recipe_upgrades_with_its_parent():
    from difftech_lab import Recipe

    parent = read_recipe(FIXTURES / "v1_txt2img.png").to_dict()
    v1_parent = {"mode": "txt2img", "prompt": "a red circle", "steps": 4, "sampler": "edm",
                 "sampler_options": {"S_churn": 1.0}, "cfg": 3.0, "seed": 1, "model": "m", "version": 1}
    v1_child = {**v1_parent, "prompt": "a blue circle", "cfg": 5.0, "branch": {"parent": v1_parent, "step": 2}}
    recipe = Recipe.from_dict(v1_child)
    assert recipe.technique == "branch" and recipe.settings.cfg == 5.0
    assert recipe.settings.sampler_options == {"s_churn": 1.0}
    assert recipe.params["step"] == 2 and recipe.params["overrides"] == {"prompt": "a blue circle"}
    assert recipe.params["parent"]["settings"]["cfg"] == 3.0 and parent["version"] == 2


def test_inpainting_leaves_every_pixel_outside_the_blurred_mask_unchanged(bundled):
    base = bundled.generate("a big red circle on the left and a big blue square on the right on a white "
                            "background", seed=4, steps=12)
    mask = np.zeros((64, 64), np.float32)
    mask[:, :32] = 1
    prompt = "a big green circle on the left and a big blue square on the right on a white background"
    kept = bundled.inpaint(base.images[0], mask, prompt, seed=4, steps=12)
    raw = bundled.inpaint(base.images[0], mask, prompt, seed=4, steps=12, composite=False)
    original = np.asarray(base.images[0], dtype=np.int16)
    outside = blur_mask(mask, kept.recipe.params["mask_blur"]) == 0
    assert outside[:, 40:].all()  # the blur band (0.5 px at 64 px) is narrow
    assert (np.asarray(kept.images[0], dtype=np.int16)[outside] == original[outside]).all()
    # the oracle that compositing is needed: the decoder alone shifts kept pixels (its attention is global)
    assert np.abs(np.asarray(raw.images[0], dtype=np.int16)[outside] - original[outside]).max() > 0
    inside = np.asarray(kept.images[0], dtype=np.int16)[:, :28]
    assert np.abs(inside - original[:, :28]).max() > 50  # the circle did change colour


def test_recipes_record_the_weights_and_warn_when_run_on_others(tiny_session, tiny_folders):
    import warnings

    from difftech_lab import ModelMismatchWarning, Recipe
    from difftech_lab.models.identity import weights_hash

    result = tiny_session.generate("a star", seed=1, steps=2, width=32, height=32, progress=False)
    assert result.recipe.model_hash == weights_hash(tiny_folders["sd15"]) != ""
    assert weights_hash(tiny_folders["sd2"]) != result.recipe.model_hash  # other weights, another identity
    assert f"Model hash: {result.recipe.model_hash}" in result.recipe.parameters_text()
    other = Recipe.from_dict({**result.recipe.to_dict(), "model_hash": "0123456789ab"})
    with pytest.warns(ModelMismatchWarning, match=r"made with model 'sd15' \(weights 0123456789ab\), but the "
                                                  rf"session holds 'sd15' \(weights {result.recipe.model_hash}\)"):
        assert tiny_session.run(other).images
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        tiny_session.run(result.recipe)  # the same weights: no warning
        tiny_session.run(Recipe.from_dict({**result.recipe.to_dict(), "model_hash": ""}))  # unknown: no warning
