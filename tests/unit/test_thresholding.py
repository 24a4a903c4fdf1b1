"""Dynamic thresholding (Imagen) and the latent mimic-scale variant."""

from types import SimpleNamespace

import pytest
import torch

from difftech_lab.errors import InvalidArgumentError
from difftech_lab.sampling.thresholding import DynamicThreshold, MimicThreshold


def diffusers_threshold(x0, ratio, max_value):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=ratio, sample_max_value=max_value)
    return sched._threshold_sample(x0)


def test_inside_unit_range_unchanged():
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    torch.testing.assert_close(DynamicThreshold()(x0), x0)


@pytest.mark.parametrize("max_value", [1.0, 1.5, 10.0])
def test_output_in_unit_range_and_matches_diffusers(max_value):
    x0 = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 4
    out = DynamicThreshold(0.995, max_value)(x0)
    assert out.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(out, diffusers_threshold(x0, 0.995, max_value))


def test_one_percent_outliers_reach_exactly_one():
    gen = torch.Generator().manual_seed(3)
    x0 = (torch.rand(1, 4, 10, 10, generator=gen) - 0.5)  # within ±0.5
    flat = x0.view(-1)
    idx = torch.randperm(flat.numel(), generator=gen)[:4]  # 1% of 400 values
    flat[idx] = torch.tensor([5.0, -5.0, 5.0, -5.0])
    out = DynamicThreshold(0.995, max_value=10.0)(x0)
    s = torch.quantile(x0.abs().view(-1), 0.995)
    assert s == 5.0  # 1% at ±5 holds the 99.5th percentile
    assert out.max() == 1.0 and out.min() == -1.0
    rest = ~torch.isin(torch.arange(400), idx)
    torch.testing.assert_close(out.view(-1)[rest], x0.view(-1)[rest] / 5.0)


def test_dynamic_batch_independence():
    gen = torch.Generator().manual_seed(4)
    a, b = torch.randn(1, 3, 8, 8, generator=gen) * 3, torch.randn(1, 3, 8, 8, generator=gen) * 3
    t = DynamicThreshold(0.9, 5.0)
    torch.testing.assert_close(t(torch.cat([a, b]))[:1], t(a))
    torch.testing.assert_close(t(torch.cat([a, 50 * b]))[:1], t(a))


def mimic_context(uncond, cond, cfg):
    return SimpleNamespace(step=0, steps=10, uncond=uncond, conds=[cond], weights=[1.0], cfg=cfg,
                           combine=lambda scale: uncond + scale * (cond - uncond))


def test_mimic_noop_at_equal_scale():
    gen = torch.Generator().manual_seed(5)
    u, c = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    ctx = mimic_context(u, c, 7.0)
    x0 = ctx.combine(7.0)
    for p in (1.0, 0.95):
        torch.testing.assert_close(MimicThreshold(7.0, p)(x0, ctx), x0)


def test_mimic_closed_form_at_full_percentile():
    gen = torch.Generator().manual_seed(6)
    u, c = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    ctx = mimic_context(u, c, 20.0)
    x0, mimic = ctx.combine(20.0), ctx.combine(4.0)
    out = MimicThreshold(4.0, 1.0)(x0, ctx)
    # percentile 1: guided spread is larger, so each channel is scaled about its mean to the mimic spread
    centre = x0.mean(dim=(2, 3), keepdim=True)
    spread = lambda t: (t - t.mean(dim=(2, 3), keepdim=True)).abs().amax(dim=(2, 3), keepdim=True)  # noqa: E731
    torch.testing.assert_close(out, (x0 - centre) * spread(mimic) / spread(x0) + centre)


def test_mimic_batch_independence():
    gen = torch.Generator().manual_seed(7)
    u, c = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    t = MimicThreshold(3.0, 0.9)
    both = t(mimic_context(u, c, 12.0).combine(12.0), mimic_context(u, c, 12.0))
    one = t(mimic_context(u[:1], c[:1], 12.0).combine(12.0), mimic_context(u[:1], c[:1], 12.0))
    torch.testing.assert_close(both[:1], one)


def test_mimic_curve_per_step():
    gen = torch.Generator().manual_seed(8)
    u, c = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 4, 8, 8, generator=gen)
    ctx = mimic_context(u, c, 7.0)
    x0 = ctx.combine(7.0)
    t = MimicThreshold(lambda step, steps: 7.0 if step == 0 else 3.0)
    torch.testing.assert_close(t(x0, ctx), x0)
    ctx.step = 1
    assert not torch.allclose(t(x0, ctx), x0)


@pytest.mark.parametrize("p", [0.0, -0.1, 1.01, float("nan")])
def test_bad_percentile(p):
    with pytest.raises(InvalidArgumentError, match="percentile"):
        DynamicThreshold(percentile=p)
    with pytest.raises(InvalidArgumentError, match="percentile"):
        MimicThreshold(percentile=p)


def test_bad_max_value():
    with pytest.raises(InvalidArgumentError, match="max_value"):
        DynamicThreshold(max_value=0.5)
