"""The shipped tiny-shapes model: a standard diffusers folder that loads offline and generates what its card says."""

import json
import logging
import os
import warnings

import numpy as np
import pytest
import torch

from difftech_lab import metrics
from difftech_lab.models.loading import BUNDLED_MODEL
from difftech_lab.training import components, dataset


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pipe():
    os.environ["HF_HUB_OFFLINE"] = "1"
    from diffusers import StableDiffusionPipeline
    return StableDiffusionPipeline.from_pretrained(BUNDLED_MODEL)


@pytest.fixture(scope="module")
def card():
    return json.loads((BUNDLED_MODEL / "evaluation.json").read_text())


def test_the_folder_is_small_safetensors_only():
    files = [f for f in BUNDLED_MODEL.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 25e6
    assert not [f for f in files if f.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= {f.parent.name for f in files}


def test_loading_offline_raises_no_warning(caplog):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from diffusers import StableDiffusionPipeline
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        StableDiffusionPipeline.from_pretrained(BUNDLED_MODEL)
    assert not [w for w in caught if not issubclass(w.category, DeprecationWarning)], [str(w.message) for w in caught]
    # transformers says once per process that its image processors would prefer torchvision: the environment's
    # business, not the model folder's
    model_warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "torchvision" not in r.getMessage()]
    assert not model_warnings, caplog.text


def test_components_are_the_documented_ones(pipe):
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.unet.config.in_channels == pipe.vae.config.latent_channels == 4
    assert 2 ** (len(pipe.vae.config.block_out_channels) - 1) == 4
    attn_blocks = [b for b in pipe.unet.down_blocks if hasattr(b, "attentions")]
    assert len(attn_blocks) >= 2  # self- and cross-attention at two resolutions or more
    for word in components.grammar_words():
        assert len(pipe.tokenizer(word).input_ids) == 3, word
    assert pipe.tokenizer("zebra ünïcode 42 ☃").input_ids[-1] == pipe.tokenizer.eos_token_id


def test_scaled_latents_have_about_unit_std(pipe):
    images, _ = dataset.batch(424_242, 32)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        z = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
    assert 0.8 < z.std().item() < 1.25


def test_the_reference_generation_scores_as_the_model_card_says(pipe, card):
    ref = card["reference"]
    image = pipe(ref["prompt"], height=64, width=64, num_inference_steps=ref["steps"],
                 guidance_scale=ref["guidance_scale"], generator=torch.Generator().manual_seed(ref["seed"]),
                 output_type="np").images[0]
    image = (image * 255).round().clip(0, 255).astype(np.uint8)
    s = metrics.score(image, ref["prompt"])
    got = {a: getattr(s.objects[0], a) for a in ("size", "colour", "shape", "position")}
    assert got | {"background": s.background, "count": s.count} == ref["score"]
    assert abs(image.mean() - ref["mean"]) < 2.0
    card_text = (BUNDLED_MODEL / "README.md").read_text()
    for name, row in card["rows"].items():
        assert f"| {name} | {row['n']} | {row['strict']:.1%} ± {row['strict_se']:.1%} |" in card_text


def test_the_ci_sized_evaluation_agrees_with_the_model_card(card):
    """24 held-out prompts (canonical and free, one and two objects) through Session, scored strictly: each row
    may differ from the card in at most 2 images (float differences between CPUs), so a regression in sampling
    or loading shows up."""
    from difftech_lab import Session
    from difftech_lab.training.evaluate import ci_evaluation

    got = ci_evaluation(Session(device="cpu", progress=False), card["guidance_scale"], card["steps"])
    assert got.keys() == card["ci"].keys()
    for name, verdicts in card["ci"].items():
        assert sum(a != b for a, b in zip(got[name], verdicts)) <= 2, (name, got[name], verdicts)


def test_the_model_names_its_version_and_recommended_cfg():
    meta = json.loads((BUNDLED_MODEL / "difftech.json").read_text())
    assert meta["version"] == 4 and meta["cfg"] > 1


def test_the_model_names_the_longest_caption_it_was_trained_on(pipe):
    from difftech_lab import layouts
    from difftech_lab.training import train_text

    trained = json.loads((BUNDLED_MODEL / "difftech.json").read_text())["caption_tokens"]
    assert trained == train_text.longest_caption(pipe.tokenizer)  # what export writes, from the training captions

    def length(text):
        return len(pipe.tokenizer(text).input_ids)

    assert max(length(l.prompt) for l in layouts.in_grammar(20)) <= trained  # three objects fit: no warning
    corners = layouts.four_corners(20)
    assert min(length(l.prompt) for l in corners) > trained  # four do not ...
    assert max(length(part) for l in corners for part in l.prompt_in_parts().split(" BREAK ")) <= trained  # in parts


def test_other_sizes_generate(pipe):
    image = pipe("a big red circle on the left on a white background", height=64, width=128, num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (64, 128, 3)


# Golden numbers of Session's own path (prompt encoder, plan, sampler loop, decode) on the bundled model, on the
# CPU in float32 (CUDA would default to fp16, whose numbers differ). The tolerances absorb float differences
# between CPUs and thread counts, not a change of sampler, schedule, guidance or decoder.
GOLDEN = dict(prompt="a big red circle on the left on a white background", seed=4, steps=12,
              latents_mean=0.372655, latents_std=0.823124, channel_means=(248.906, 228.201, 229.572))


def test_session_on_the_bundled_model_matches_its_golden_run():
    from difftech_lab import Session

    session = Session(device="cpu", progress=False)
    result = session.generate(GOLDEN["prompt"], seed=GOLDEN["seed"], steps=GOLDEN["steps"])
    s = metrics.score(result.images[0], GOLDEN["prompt"])
    assert s.correct and s.background, s
    assert result.recipe.settings.cfg == 5.0  # the model's recommended scale (difftech.json) when cfg is not given
    z = result.latents.double()
    assert tuple(z.shape) == (1, 4, 16, 16)
    assert z.mean().item() == pytest.approx(GOLDEN["latents_mean"], abs=1e-3)
    assert z.std().item() == pytest.approx(GOLDEN["latents_std"], abs=1e-3)
    image = np.asarray(result.images[0].convert("RGB"), dtype=np.float64)
    assert image.shape == (64, 64, 3)
    assert image.mean(axis=(0, 1)) == pytest.approx(GOLDEN["channel_means"], abs=1.0)  # ±1 level of 255
