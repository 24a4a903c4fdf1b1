"""FreeU, perturbed-attention guidance and self-attention guidance as patches: no-op settings reproduce the plain
run, the perturbed attention and the blur are diffusers' own, runs record and replay them, bad options are refused."""

import numpy as np
import pytest
import torch

from difftech_lab.errors import InvalidArgumentError
from difftech_lab.patches import make_patch
from difftech_lab.patches.freeu import family
from difftech_lab.patches.perturbed import self_attention_layers

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RUN = dict(seed=3, steps=4, width=32, height=32, cfg=4.0, progress=False)


def test_pag_at_scale_zero_is_the_plain_run_bit_for_bit(tiny_session):
    plain = tiny_session.generate("a star", **RUN)
    with tiny_session.patched(pag=0.0):
        off = tiny_session.generate("a star", **RUN)
    assert torch.equal(plain.latents, off.latents) and off.nfe == plain.nfe


def test_pag_costs_one_forward_per_step_changes_the_image_and_replays(tiny_session):
    plain = tiny_session.generate("a star", **RUN)
    with tiny_session.patched(pag={"scale": 3.0, "blocks": ["mid"]}):
        guided = tiny_session.generate("a star", **RUN)
    assert guided.nfe == plain.nfe * 3 // 2  # uncond + cond + perturbed cond per step
    assert not torch.equal(plain.latents, guided.latents)
    assert guided.recipe.patches == [{"name": "pag", "options": {"scale": 3.0, "blocks": ["mid"]}}]
    again = tiny_session.run(guided.recipe)
    assert torch.equal(again.latents, guided.latents)
    assert torch.equal(tiny_session.generate("a star", **RUN).latents, plain.latents)  # processors restored


def test_the_perturbed_forward_is_diffusers_identity_self_attention(tiny_session):
    """Oracle: diffusers' PAG processor, which runs its batch's second half with identity self-attention."""
    from diffusers.models.attention_processor import PAGIdentitySelfAttnProcessor2_0

    model = tiny_session.model
    unet = model.unet
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    ctx = torch.randn(1, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    patch = make_patch(("pag", 1.0))
    with torch.no_grad(), patch(model):
        patch._states[id(model)]["on"] = True
        ours = unet(x, 500, ctx).sample
        patch._states[id(model)]["on"] = False
        plain = unet(x, 500, ctx).sample
    layers = self_attention_layers(unet, ["mid"])
    saved = {n: m.processor for n, m in layers.items()}
    try:
        for m in layers.values():
            m.set_processor(PAGIdentitySelfAttnProcessor2_0())
        with torch.no_grad():
            theirs = unet(x.repeat(2, 1, 1, 1), 500, ctx.repeat(2, 1, 1)).sample
    finally:
        for n, m in layers.items():
            m.set_processor(saved[n])
    torch.testing.assert_close(ours, theirs[1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, theirs[:1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, plain)


def test_pag_runs_on_the_sdxl_layout(tiny_folders):
    from difftech_lab import Session

    session = Session.from_pretrained(tiny_folders["sdxl"], progress=False)
    with session.patched(pag=2.0):
        result = session.generate("a star", **RUN)
    assert np.isfinite(np.asarray(result.images[0])).all() and result.nfe == 12


def test_freeu_with_unit_factors_leaves_the_run_as_it_was(tiny_session):
    plain = tiny_session.generate("a star", **RUN)
    with tiny_session.patched(freeu={"b1": 1.0, "b2": 1.0, "s1": 1.0, "s2": 1.0}):
        unit = tiny_session.generate("a star", **RUN)
    torch.testing.assert_close(unit.latents, plain.latents, rtol=1e-4, atol=1e-4)  # FFT round-off only
    with tiny_session.patched(freeu="sd1"):
        boosted = tiny_session.generate("a star", **RUN)
    assert (boosted.latents - plain.latents).abs().max() > 1e-2
    assert torch.equal(tiny_session.run(boosted.recipe).latents, boosted.latents)
    assert all(getattr(b, "b1", None) is None for b in tiny_session.model.unet.up_blocks)  # restored


def test_freeu_auto_picks_the_family_preset(tiny_folders):
    from difftech_lab import Session

    from types import SimpleNamespace

    assert family(Session.from_pretrained(tiny_folders["sd15"], progress=False).model) == "sd1"
    assert family(Session.from_pretrained(tiny_folders["sdxl"], progress=False).model) == "sdxl"
    sd2 = SimpleNamespace(is_sdxl=False, unet=SimpleNamespace(config=SimpleNamespace(cross_attention_dim=1024)))
    assert family(sd2) == "sd2"  # SD 2.x: OpenCLIP-H's 1024-wide states


@pytest.mark.parametrize("spec, match", [
    (("pag", -1.0), "scale"), (("pag", {"scale": 1.0, "blocks": ["middle"]}), "does not exist"),
    (("pag", {"scale": 1.0, "blocks": []}), "at least one block"), (("freeu", "sd3"), "preset"),
    (("freeu", {"b3": 1.0}), "no factor"), (("freeu", {"b1": "big"}), "number"),
])
def test_bad_options_are_refused_naming_the_value(spec, match):
    with pytest.raises(InvalidArgumentError, match=match):
        make_patch(spec)


def test_a_block_without_self_attention_is_refused_naming_those_with_it(tiny_session):
    unet = tiny_session.model.unet
    plain_blocks = [f"down.{i}" for i, b in enumerate(unet.down_blocks) if not hasattr(b, "attentions")]
    assert plain_blocks
    with pytest.raises(InvalidArgumentError, match="has no self-attention; these do: .*mid"):
        self_attention_layers(unet, plain_blocks[:1])


# ----------------------------------------------------------------------------------- self-attention guidance
def test_sag_at_scale_zero_is_the_plain_run_bit_for_bit_and_costs_one_forward_per_step(tiny_session):
    plain = tiny_session.generate("a star", **RUN)
    with tiny_session.patched(sag=0.0):
        off = tiny_session.generate("a star", **RUN)
    assert torch.equal(plain.latents, off.latents) and off.nfe == plain.nfe
    with tiny_session.patched(sag=0.75):
        guided = tiny_session.generate("a star", **RUN)
    assert guided.nfe == plain.nfe * 3 // 2 and not torch.equal(guided.latents, plain.latents)
    assert torch.equal(tiny_session.run(guided.recipe).latents, guided.latents)


def test_sag_with_nothing_attended_is_plain_cfg(tiny_session, monkeypatch):
    """Oracle: with an empty mask the degraded latent is the step's own x, so the correction vanishes."""
    from difftech_lab.patches import self_attention

    monkeypatch.setattr(self_attention, "attended_mask", lambda probs, b, heads, size, latent, c: torch.zeros(b, c, *latent))
    plain = tiny_session.generate("a star", **RUN)
    with tiny_session.patched(sag=5.0):
        guided = tiny_session.generate("a star", **RUN)
    # the captured layer computes attention the classic way, sdpa the fused way: float round-off only
    torch.testing.assert_close(guided.latents, plain.latents, rtol=1e-4, atol=1e-4)


def test_sag_blur_is_diffusers_blur():
    from diffusers.pipelines.deprecated.stable_diffusion_sag.pipeline_stable_diffusion_sag import gaussian_blur_2d

    from difftech_lab.patches.self_attention import gaussian_blur

    x = torch.randn(2, 4, 16, 12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gaussian_blur(x), gaussian_blur_2d(x, 9, 1.0), rtol=1e-5, atol=1e-6)


def test_the_attended_mask_marks_keys_that_receive_more_than_average_attention():
    from difftech_lab.patches.self_attention import attended_mask

    probs = torch.zeros(2 * 2, 4, 4)  # batch 1 (unconditional) + 1 conditional row, 2 heads, a 2×2 map
    probs[:2, :, 0] = 1.0  # every query of both unconditional heads attends to key 0 (top left)
    probs[2:, :, 3] = 1.0  # the conditional rows attend elsewhere, and must be ignored
    mask = attended_mask(probs, 1, 2, (2, 2), (4, 4), 3)
    expected = torch.zeros(4, 4)
    expected[:2, :2] = 1
    assert mask.shape == (1, 3, 4, 4) and torch.equal(mask[0, 1], expected)


def test_the_sag_term_is_the_epsilon_space_rule():
    """x̂0 form of ε ← ε + s(ε_uncond − ε_degraded), ε read at x and at the degraded latent."""
    from types import SimpleNamespace

    from difftech_lab.patches.self_attention import SelfAttentionGuidance

    g = torch.Generator().manual_seed(0)
    x, uncond, x0 = (torch.randn(1, 4, 4, 4, generator=g) for _ in range(3))
    sigma, s = torch.tensor([2.0]), 0.6
    model = SimpleNamespace(unet=SimpleNamespace(down_blocks=[0, 0]))
    patch = SelfAttentionGuidance(s)
    patch._states[id(model)] = {"armed": False, "probs": torch.rand(1, 4, 4, generator=g) * 0.5 + 0.3, "heads": 1}
    (term,) = patch.guidance_terms(model)
    seen = {}

    def forward(xd, sig, embeddings):
        seen["x"] = xd
        return [0.5 * xd]  # any network: x̂0_degraded = D(x_degraded)

    out = term(x0, SimpleNamespace(x=x, sigma=sigma, uncond=uncond, embeddings=["neg", "pos"], forward=forward))
    eps = lambda xx, d: (xx - d) / sigma
    eps_guided = eps(x, x0) + s * (eps(x, uncond) - eps(seen["x"], 0.5 * seen["x"]))
    torch.testing.assert_close(out, x - sigma * eps_guided, rtol=1e-5, atol=1e-5)


def test_sag_runs_on_the_sdxl_layout(tiny_folders):
    from difftech_lab import Session

    session = Session.from_pretrained(tiny_folders["sdxl"], progress=False)
    with session.patched(sag=0.75):
        result = session.generate("a star", **RUN)
    assert np.isfinite(np.asarray(result.images[0])).all() and result.nfe == 12
