"""The Session end to end on tiny random pipelines: loading, generation, recipes, errors, cancellation."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from difftech_lab import (CancelledError, InvalidArgumentError, ModelLoadError, NumericalError, Recipe, Session,
                          ShapeError, UnknownNameError, UnsafeCheckpointError, read_recipe)

FAST = dict(steps=3, width=32, height=32, progress=False)


def _same(a, b):
    return torch.equal(a.latents, b.latents) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images))


@pytest.mark.parametrize("kind", ["sd15", "sd2", "sdxl"])
def test_each_architecture_generates_from_a_local_folder_offline(tiny_folders, kind):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    session = Session.from_pretrained(tiny_folders[kind], progress=False)
    result = session.generate("a red circle", seed=1, **{**FAST, "progress": False})
    assert [im.size for im in result.images] == [(32, 32)]
    assert result.latents.shape == (1, 4, 16, 16)
    assert torch.isfinite(result.latents).all()
    assert result.nfe == 2 * 3  # CFG: cond + uncond per Euler step
    expected = {"sd15": "EpsDiscrete", "sd2": "VDiscrete", "sdxl": "EpsDiscrete"}[kind]
    assert type(session.model_sampling).__name__ == expected


def test_recipe_round_trips_json_and_reproduces_bit_for_bit(tiny_session):
    result = tiny_session.generate("a (blue:1.2) square AND a star :0.5", seed=7, cfg=[5, 4, 3], cfg_rescale=0.5,
                                   sampler="dpmpp_2m", schedule="karras", **FAST)
    recipe = Recipe.from_json(result.recipe.to_json())
    assert recipe == result.recipe
    assert recipe.settings.cfg == [5.0, 4.0, 3.0]
    again = tiny_session.run(recipe)
    assert _same(result, again)


def test_saved_png_carries_parameters_and_recipe(tiny_session, tmp_path):
    from PIL import Image

    result = tiny_session.generate("a green triangle", negative_prompt="blurry", seed=3, **FAST)
    path = result.save(tmp_path / "out.png")
    text = Image.open(path).text
    assert text["parameters"].startswith("a green triangle\nNegative prompt: blurry\nSteps: 3")
    assert "Seed: 3" in text["parameters"]
    assert read_recipe(path) == result.recipe
    assert _same(tiny_session.run(read_recipe(path)), result)


def test_same_recipe_gives_identical_latents_in_another_process(tiny_session, tiny_folders, tmp_path):
    result = tiny_session.generate("a yellow star", seed=11, sampler="euler_ancestral", **FAST)
    (tmp_path / "recipe.json").write_text(result.recipe.to_json())
    script = (
        "import sys, torch; from difftech_lab import Session, Recipe\n"
        f"s = Session.from_pretrained({str(tiny_folders['sd15'])!r}, progress=False)\n"
        f"r = s.run(Recipe.from_json(open({str(tmp_path / 'recipe.json')!r}).read()))\n"
        f"torch.save(r.latents, {str(tmp_path / 'latents.pt')!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert torch.equal(torch.load(tmp_path / "latents.pt"), result.latents)


def test_step_events_carry_denoised_and_trajectory_branches(tiny_session):
    events = []
    result = tiny_session.generate("a circle", seed=2, keep_trajectory=True, callback=events.append, **FAST)
    assert [e.i for e in events] == [0, 1, 2]
    assert all(e.denoised.shape == result.latents.shape and e.steps == 3 for e in events)
    assert events[-1].nfe == result.nfe
    assert torch.equal(events[-1].x, result.latents)
    same = tiny_session.branch(result, 1)
    assert torch.equal(same.latents, result.latents)  # nothing changed: the branch replays the same steps
    other = tiny_session.branch(result, 1, cfg=1.5)
    assert not torch.equal(other.latents, result.latents)
    assert other.nfe < result.nfe
    assert _same(tiny_session.run(Recipe.from_json(other.recipe.to_json())), other)


def test_img2img_runs_the_last_steps_and_inpaint_keeps_the_unmasked_region(tiny_session):
    base = tiny_session.generate("a square", seed=4, **FAST)
    image = base.images[0]
    half = tiny_session.img2img(image, "a square", strength=0.5, seed=5, steps=4, progress=False)
    assert half.nfe == 2 * 2  # int(4 · 0.5) steps, CFG
    left = np.zeros((32, 32), np.float32)
    left[:, :16] = 1
    keep_right = tiny_session.inpaint(image, left, "a star", seed=5, steps=3, composite=False, progress=False)
    assert torch.allclose(keep_right.latents[..., 8:], tiny_session.encode(image)[..., 8:], atol=1e-6)
    full_mask = tiny_session.inpaint(image, np.ones((32, 32), np.float32), "a star", seed=5, steps=3, progress=False)
    plain = tiny_session.img2img(image, "a star", strength=1.0, seed=5, steps=3, progress=False)
    assert torch.allclose(full_mask.latents, plain.latents, atol=1e-5)
    assert _same(tiny_session.run(keep_right.recipe), keep_right)


def test_prompt_embeddings_are_cached_bit_identically(tiny_session, monkeypatch):
    tiny_session.encoder.cache_clear()
    before = tiny_session.encoder.cache_info()
    a = tiny_session.encode_prompt("a (red:1.3) circle")
    calls = []
    encoder = tiny_session.model.text_encoders[0]
    monkeypatch.setattr(encoder, "forward", lambda *args, **kwargs: calls.append(1))  # a second encode would fail
    b = tiny_session.encode_prompt("a (red:1.3) circle")
    after = tiny_session.encoder.cache_info()
    assert calls == [] and torch.equal(a.hidden, b.hidden)
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 1)
    b.hidden.add_(1)  # callers get their own copy: editing it leaves the cache intact
    assert torch.equal(tiny_session.encode_prompt("a (red:1.3) circle").hidden, a.hidden)


# ------------------------------------------------------------------------------------- bad input, one each
def _still_usable(session):
    assert session.generate("ok", seed=0, **FAST).images


def test_size_the_vae_cannot_take(tiny_session):
    with pytest.raises(InvalidArgumentError, match="width 33 .* multiple of 4"):
        tiny_session.generate("x", width=33, height=32, steps=2, progress=False)
    _still_usable(tiny_session)


def test_unknown_sampler_and_schedule_names(tiny_session):
    with pytest.raises(UnknownNameError, match="sampler 'eulr'.*euler"):
        tiny_session.generate("x", sampler="eulr", **FAST)
    with pytest.raises(UnknownNameError, match="schedule 'karas'"):
        tiny_session.generate("x", schedule="karas", **FAST)
    _still_usable(tiny_session)


def test_mask_and_image_of_the_wrong_shape(tiny_session):
    image = tiny_session.generate("x", seed=1, **FAST).images[0]
    with pytest.raises(ShapeError, match=r"mask has shape \(16, 16\)"):
        tiny_session.inpaint(image, np.ones((16, 16)), "x", steps=2, progress=False)
    with pytest.raises(ShapeError, match=r"image of shape \(32, 32, 2\)"):
        tiny_session.img2img(np.zeros((32, 32, 2)), "x", steps=2, progress=False)
    with pytest.raises(ShapeError, match="noise has shape"):
        tiny_session.generate("x", noise=torch.zeros(1, 4, 8, 8), **FAST)
    _still_usable(tiny_session)


def test_out_of_range_strength(tiny_session):
    image = tiny_session.generate("x", seed=1, **FAST).images[0]
    for strength in (0.0, 1.5, -0.1):
        with pytest.raises(InvalidArgumentError, match=f"strength {strength}"):
            tiny_session.img2img(image, "x", strength=strength, steps=2, progress=False)
    with pytest.raises(InvalidArgumentError, match="runs no step"):
        tiny_session.img2img(image, "x", strength=0.1, steps=3, progress=False)
    _still_usable(tiny_session)


def test_nan_in_latents_is_a_numerical_error(tiny_session, monkeypatch):
    unet = tiny_session.model.unet
    original = unet.forward

    def overflow(*args, **kwargs):
        out = original(*args, **kwargs)
        return (out[0] * float("nan"),)

    monkeypatch.setattr(unet, "forward", overflow)
    with pytest.raises(NumericalError, match="NaN/inf at step 0"):
        tiny_session.generate("x", **FAST)
    monkeypatch.undo()
    _still_usable(tiny_session)


def test_corrupt_or_incomplete_model_folder(tiny_folders, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_folders["sd15"], broken)
    weights = next((broken / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="could not load 'unet'"):
        Session.from_pretrained(broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(ModelLoadError, match=r"\['vae'\] are missing"):
        Session.from_pretrained(broken)
    with pytest.raises(ModelLoadError, match="model_index.json is missing"):
        Session.from_pretrained(tmp_path)


def test_pickle_is_refused_unless_allowed_and_then_never_unpickles_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"x": Payload()}}, path)
    with pytest.raises(UnsafeCheckpointError, match="pickled checkpoint"):
        Session.from_single_file(path)
    with pytest.raises(ModelLoadError, match="weights-only"):
        Session.from_single_file(path, allow_pickle=True)
    assert not (tmp_path / "pwned").exists()


def test_cancel_and_keyboard_interrupt_leave_the_session_usable(tiny_session):
    reference = tiny_session.generate("a star", seed=9, **FAST)

    def cancel_at_1(event):
        if event.i == 1:
            tiny_session.cancel()

    with pytest.raises(CancelledError, match="cancelled at step 1"):
        tiny_session.generate("a star", seed=9, callback=cancel_at_1, **FAST)

    def interrupt(event):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiny_session.generate("a star", seed=9, callback=interrupt, **FAST)
    assert _same(tiny_session.generate("a star", seed=9, **FAST), reference)


def test_missing_bundled_model_is_a_clear_error(monkeypatch, tmp_path):
    from difftech_lab.errors import BundledModelMissingError
    from difftech_lab.models import loading

    monkeypatch.setattr(loading, "BUNDLED_MODEL", tmp_path / "nothing")
    with pytest.raises(BundledModelMissingError, match="bundled model is not installed"):
        Session()


def test_hub_id_resolves_from_the_local_cache_offline(tiny_folders, tmp_path, monkeypatch):
    """A hub id loads through huggingface_hub's cache layout (refs/main → snapshots/<rev>) with no network."""
    import shutil

    import huggingface_hub.constants as hub_constants

    snapshot = tmp_path / "models--difftech--tiny-sd2" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_folders["sd2"], snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    session = Session.from_pretrained("difftech/tiny-sd2", progress=False)
    assert session.model.name == "difftech/tiny-sd2"
    assert type(session.model_sampling).__name__ == "VDiscrete"
    with pytest.raises(ModelLoadError, match="'difftech/absent' is no local folder"):
        Session.from_pretrained("difftech/absent")


def test_sigmas_used_show_heun_points_and_restart_jumps(tiny_session):
    plain = tiny_session.generate("x", seed=0, sampler="euler", **FAST)
    assert plain.sigmas_used == [*plain.sigmas.tolist()[:-1], 0.0]
    restart = tiny_session.generate("x", seed=0, sampler="restart", sampler_options={"restart_list": {1: [2, 1, 0, 5.0]}},
                                    **FAST)
    used = restart.sigmas_used
    assert 5.0 in [round(s, 4) for s in used]  # the forward jump to t_max
    assert any(b > a for a, b in zip(used, used[1:]))  # σ goes back up once
    assert restart.nfe == 2 * (2 * 3 - 1 + 2 * 2)  # Heun 2N−1 plus K·2·N_restart, CFG doubles


def test_a_branch_can_be_branched_again(tiny_session):
    result = tiny_session.generate("a circle", seed=2, keep_trajectory=True, steps=4, width=32, height=32,
                                   progress=False)
    child = tiny_session.branch(result, 2, cfg=2.0, keep_trajectory=True)
    assert [e.i for e in child.trajectory] == [0, 1, 2, 3]
    assert torch.equal(child.trajectory[1].x, result.trajectory[1].x)
    grandchild = tiny_session.branch(child, 3, keep_trajectory=True)
    assert torch.equal(grandchild.latents, child.latents)  # nothing changed after step 3: the same final latent


def test_given_noise_and_embedding_are_recorded_so_the_recipe_still_reproduces(tiny_session):
    from difftech_lab.techniques.latents import slerp

    a, b = tiny_session.noise(1, 32, 32), tiny_session.noise(2, 32, 32)
    embedding = tiny_session.encode_prompt("a (red:1.2) star")
    result = tiny_session.generate(embedding, noise=slerp(a, b, 0.3), **FAST)
    params = result.recipe.params
    assert "$embedding" in params["prompt"] and params["noise"]["$tensor"]["shape"] == [1, 4, 16, 16]
    assert _same(tiny_session.run(Recipe.from_json(result.recipe.to_json())), result)
    with pytest.raises(InvalidArgumentError, match="prompt must be a str or an Embedding"):
        tiny_session.generate(42, **FAST)


def test_result_tensors_are_ordinary_tensors(tiny_session):
    result = tiny_session.generate("x", seed=0, keep_trajectory=True, **FAST)
    for tensor in (result.latents, result.trajectory[0].x, result.trajectory[0].denoised):
        assert not tensor.is_inference()
    result.latents += 1  # in-place edits work outside the sampling loop


def test_cfg_defaults_to_what_the_model_folder_recommends(tiny_session):
    assert tiny_session.generate("x", **FAST).recipe.settings.cfg == 7.0  # no difftech.json: Stable Diffusion's default
    bundled = Session(progress=False)
    import json

    from difftech_lab.models import bundled_model_path

    recommended = json.loads((bundled_model_path() / "difftech.json").read_text())["cfg"]
    assert bundled.model.default_cfg == recommended == 5.0  # the scale its model card evaluates at
    assert bundled.generate("a big red circle on the left on a white background", steps=2,
                            progress=False).recipe.settings.cfg == 5.0
