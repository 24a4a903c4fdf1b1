"""Guider: CFG, composable AND, CFG rescale, batching, step mapping, curves, prompt editing."""

import pytest
import torch

from difftech_lab.conditioning.types import Conditioning, CondTerm, Embedding
from difftech_lab.errors import DifftechError
from difftech_lab.sampling.guider import Guider, rescale_cfg
from difftech_lab.sampling.thresholding import DynamicThreshold, MimicThreshold

B, C, H, W = 2, 4, 6, 6
SIGMAS = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.0])


class EpsSampling:
    """ε-prediction stand-in: x̂0 = x − σ·ε."""

    def denoised(self, x, sigma, output):
        return x - sigma.view(-1, 1, 1, 1) * output

    def prediction(self, x, sigma, denoised):
        return (x - denoised) / sigma.view(-1, 1, 1, 1)


class MockModel:
    """Closed-form denoiser x̂0 = (a + m/10)·x + b·m + mean(pooled), m = mean(hidden).

    Records the rows and token length T of each call.
    """

    def __init__(self, a=0.5, b=1.0):
        self.a, self.b, self.calls = a, b, []

    def __call__(self, x, sigma, hidden, pooled=None):
        assert x.shape[0] == sigma.shape[0] == hidden.shape[0]
        self.calls.append((x.shape[0], hidden.shape[1]))
        return expected(x, hidden, pooled, self.a, self.b)


def expected(x, hidden, pooled=None, a=0.5, b=1.0):
    m = hidden.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    out = (a + 0.1 * m) * x + b * m  # the conditioning scales x too, so c − u varies over the image
    if pooled is not None:
        out = out + pooled.mean(dim=1).view(-1, 1, 1, 1)
    return out


def emb(value, T=77, D=8, pooled=None):
    """An embedding whose hidden states vary around ``value`` (so the mock's output depends on it)."""
    g = torch.Generator().manual_seed(int(abs(value) * 1000) + T)
    return Embedding(hidden=value + 0.1 * torch.randn(1, T, D, generator=g), pooled=pooled)


def pred(x, e):
    """The mock's x̂0 for embedding ``e`` on batch ``x``."""
    n = x.shape[0]
    pooled = None if e.pooled is None else e.pooled.expand(n, -1)
    return expected(x, e.hidden.expand(n, -1, -1), pooled)


def conditioning(*terms, negative=None):
    terms = [t if isinstance(t, CondTerm) else CondTerm.constant(t) for t in terms]
    return Conditioning(terms=terms, negative=CondTerm.constant(negative or emb(0.0)))


def make(cond, model=None, **kw):
    return Guider(model or MockModel(), EpsSampling(), cond, SIGMAS, **kw)


@pytest.fixture
def x():
    return torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(0)) * 5


def sig(k):
    return SIGMAS[k].expand(B)


def test_plain_cfg_closed_form_and_phi0_unchanged(x):
    c, n = emb(1.0), emb(-0.3)
    g = make(conditioning(c, negative=n), cfg=6.0, cfg_rescale=0.0)
    u, pc = pred(x, n), pred(x, c)
    torch.testing.assert_close(g(x, sig(0)), u + 6.0 * (pc - u))


def test_phi1_matches_std_of_cond_prediction(x):
    c, n = emb(1.0), emb(-0.3)
    g = make(conditioning(c, negative=n), cfg=8.0, cfg_rescale=1.0)
    out = g(x, sig(1))
    eps = EpsSampling()
    e_out, e_c = eps.prediction(x, sig(1), out), eps.prediction(x, sig(1), pred(x, c))
    e_cfg = eps.prediction(x, sig(1), pred(x, n) + 8.0 * (pred(x, c) - pred(x, n)))
    torch.testing.assert_close(e_out.std(dim=(1, 2, 3)), e_c.std(dim=(1, 2, 3)))
    assert not torch.allclose(e_cfg.std(dim=(1, 2, 3)), e_c.std(dim=(1, 2, 3)))


def test_guider_rescale_matches_diffusers_in_eps_space(x):
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    c, n = emb(1.0), emb(-0.3)
    g = make(conditioning(c, negative=n), cfg=7.5, cfg_rescale=0.7)
    eps, s = EpsSampling(), sig(2)
    e_u, e_c = eps.prediction(x, s, pred(x, n)), eps.prediction(x, s, pred(x, c))
    ref = rescale_noise_cfg(e_u + 7.5 * (e_c - e_u), e_c, guidance_rescale=0.7)
    torch.testing.assert_close(g(x, s), eps.denoised(x, s, ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("phi", [0.0, 0.3, 0.7, 1.0])
def test_rescale_cfg_matches_diffusers_random(phi):
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    gen = torch.Generator().manual_seed(1)
    x_cfg, x_pos = torch.randn(3, 4, 5, 5, generator=gen) * 3, torch.randn(3, 4, 5, 5, generator=gen)
    torch.testing.assert_close(rescale_cfg(x_cfg, x_pos, phi), rescale_noise_cfg(x_cfg, x_pos, phi))


def test_rescale_cfg_identity_when_guided_equals_pos_and_batch_independent():
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(1, 4, 5, 5, generator=gen), torch.randn(1, 4, 5, 5, generator=gen) * 9
    pa = torch.randn(1, 4, 5, 5, generator=gen)
    torch.testing.assert_close(rescale_cfg(a, a, 0.7), a)
    batched = rescale_cfg(torch.cat([a, b]), torch.cat([pa, pa]), 0.7)
    torch.testing.assert_close(batched[:1], rescale_cfg(a, pa, 0.7))


@pytest.mark.parametrize("phi", [0.0, 0.5, 1.0])
def test_cfg1_unchanged_for_any_phi(x, phi):
    c, n = emb(1.0), emb(-0.3)
    one = make(conditioning(c, negative=n), cfg=1.0, cfg_rescale=phi)
    torch.testing.assert_close(one(x, sig(0)), pred(x, c))
    # two terms take the full path (no skip): the cfg=1 composition is its own σ_pos, so rescale is a no-op
    d = emb(2.0)
    two = make(conditioning(CondTerm.constant(c, 0.6), CondTerm.constant(d, 0.4), negative=n),
               cfg=1.0, cfg_rescale=phi)
    u = pred(x, n)
    torch.testing.assert_close(two(x, sig(0)), u + 0.6 * (pred(x, c) - u) + 0.4 * (pred(x, d) - u))


def test_cfg1_single_term_skips_uncond(x):
    model = MockModel()
    c = emb(1.0)
    g = make(conditioning(c), model=model, cfg=1.0)
    out = g(x, sig(1))
    assert model.calls == [(B, 77)]
    assert g.nfe == 1 and g.last["nfe"] == 1
    torch.testing.assert_close(out, pred(x, c))


def test_and_single_unit_term_is_plain_cfg(x):
    c, n = emb(1.0), emb(-0.3)
    g = make(conditioning(CondTerm.constant(c, 1.0), negative=n), cfg=5.0)
    u = pred(x, n)
    torch.testing.assert_close(g(x, sig(0)), u + 5.0 * (pred(x, c) - u))


def test_and_two_identical_half_terms_is_plain_cfg(x):
    c, n = emb(1.0), emb(-0.3)
    plain = make(conditioning(c, negative=n), cfg=5.0, cfg_rescale=0.7)(x, sig(1))
    halves = make(conditioning(CondTerm.constant(c, 0.5), CondTerm.constant(c, 0.5), negative=n),
                  cfg=5.0, cfg_rescale=0.7)(x, sig(1))
    torch.testing.assert_close(halves, plain)


def test_negative_weight_pushes_away(x):
    c, bad, n = emb(1.0), emb(3.0), emb(-0.3)
    g = make(conditioning(CondTerm.constant(c, 1.0), CondTerm.constant(bad, -0.5), negative=n), cfg=4.0)
    out = g(x, sig(0))
    u, pc, pb = pred(x, n), pred(x, c), pred(x, bad)
    torch.testing.assert_close(out, u + 4.0 * (pc - u) - 0.5 * 4.0 * (pb - u))
    plain = u + 4.0 * (pc - u)
    # the NOT term moves the result against its own direction (pb − u)
    assert ((out - plain) * (pb - u)).sum() < 0


def test_one_forward_per_step_with_all_rows(x):
    model = MockModel()
    g = make(conditioning(emb(1.0), emb(2.0)), model=model, cfg=7.0)
    for k in range(4):
        g(x, sig(k))
    assert model.calls == [(3 * B, 77)] * 4
    assert g.nfe == 12 and g.last["nfe"] == 3


def test_cfg_costs_two_per_call(x):
    g = make(conditioning(emb(1.0)))
    g(x, sig(0))
    g(x, sig(1))
    assert g.nfe == 4


def test_rows_grouped_by_token_length(x):
    model = MockModel()
    short, long_, n = emb(1.0, T=77), emb(2.0, T=154), emb(-0.3, T=77)
    g = make(conditioning(CondTerm.constant(short, 0.7), CondTerm.constant(long_, 0.3), negative=n),
             model=model, cfg=6.0)
    out = g(x, sig(0))
    assert sorted(model.calls) == [(B, 154), (2 * B, 77)]
    assert g.nfe == 3
    # identical to evaluating every term in its own call
    u = pred(x, n)
    torch.testing.assert_close(out, u + 6.0 * (0.7 * (pred(x, short) - u) + 0.3 * (pred(x, long_) - u)))


def test_pooled_vectors_reach_the_model(x):
    pc, pn = torch.full((1, 3), 2.0), torch.zeros(1, 3)
    c, n = emb(1.0, pooled=pc), emb(-0.3, pooled=pn)
    g = make(conditioning(c, negative=n), cfg=3.0)
    u = pred(x, n)
    torch.testing.assert_close(g(x, sig(0)), u + 3.0 * (pred(x, c) - u))


def test_per_sample_hidden_rows(x):
    hidden = torch.stack([emb(1.0).hidden[0], emb(2.0).hidden[0]])
    c, n = Embedding(hidden), emb(-0.3)
    g = make(conditioning(c, negative=n), cfg=3.0)
    u = pred(x, n)
    torch.testing.assert_close(g(x, sig(0)), u + 3.0 * (expected(x, hidden) - u))
    with pytest.raises(DifftechError, match="rows"):
        g(torch.randn(3, C, H, W), SIGMAS[0].expand(3))


def test_step_of():
    g = make(conditioning(emb(1.0)))
    assert g.step_of(torch.tensor([10.0, 10.0])) == 0
    assert g.step_of(12.0) == 0  # churned σ̂ above σ_0
    assert g.step_of(7.0) == 0
    assert g.step_of(5.0) == 1  # Heun's second evaluation at σ_1
    assert g.step_of(5.0 * (1 + 1e-6)) == 1  # float rounding around a planned σ
    assert g.step_of(5.0 * (1 - 1e-6)) == 1
    assert g.step_of(1.5) == 2  # restart segments / in-between σ
    assert g.step_of(1.0) == 3
    assert g.step_of(0.0) == 3  # clamped to N−1


def test_list_curve_gives_cfg_per_step(x):
    c, n = emb(1.0), emb(-0.3)
    g = make(conditioning(c, negative=n), cfg=[2.0, 5.0, 9.0])
    u, pc = pred(x, n), pred(x, c)
    for k, scale in [(0, 2.0), (1, 5.0), (2, 9.0), (3, 9.0)]:
        torch.testing.assert_close(g(x, sig(k)), u + scale * (pc - u))
        assert g.last["step"] == k and g.last["cfg"] == scale
    g(x, torch.full((B,), 4.0))  # between σ_1 = 5 and σ_2 = 2: step 1
    assert g.last["cfg"] == 5.0


def test_callable_curve_for_rescale(x):
    g = make(conditioning(emb(1.0)), cfg_rescale=lambda step, steps: step / steps)
    g(x, sig(2))
    assert g.last["cfg_rescale"] == 0.5


def test_prompt_editing_switches_at_the_right_step(x):
    a, b, n = emb(1.0), emb(4.0), emb(-0.3)
    term = CondTerm(schedule=[(2, a), (4, b)])  # A1111: a for 1-based steps 1..2, b after
    g = make(conditioning(term, negative=n), cfg=3.0)
    u = pred(x, n)
    for k, e in [(0, a), (1, a), (2, b), (3, b)]:
        torch.testing.assert_close(g(x, sig(k)), u + 3.0 * (pred(x, e) - u))


def test_last_records_term_norms(x):
    c, d, n = emb(1.0), emb(2.0), emb(-0.3)
    g = make(conditioning(CondTerm.constant(c, 0.5), CondTerm.constant(d, 0.5), negative=n),
             cfg=7.0, cfg_rescale=0.2)
    g(x, sig(1))
    u = pred(x, n)
    assert g.last["step"] == 1 and g.last["cfg"] == 7.0 and g.last["cfg_rescale"] == 0.2 and g.last["nfe"] == 3
    assert g.last["cond_norms"] == pytest.approx([float((pred(x, e) - u).norm()) for e in (c, d)], rel=1e-5)


def test_threshold_applied_after_combination(x):
    c, n = emb(1.0), emb(-0.3)
    g = make(conditioning(c, negative=n), cfg=6.0, threshold=DynamicThreshold(0.9))
    u = pred(x, n)
    torch.testing.assert_close(g(x, sig(0)), DynamicThreshold(0.9)(u + 6.0 * (pred(x, c) - u)))


@pytest.mark.parametrize("phi", [0.0, 0.7])
def test_mimic_threshold_noop_when_cfg_equals_mimic(x, phi):
    c, d, n = emb(1.0), emb(2.0), emb(-0.3)
    cond = conditioning(CondTerm.constant(c, 0.8), CondTerm.constant(d, 0.4), negative=n)
    plain = make(cond, cfg=7.0, cfg_rescale=phi)(x, sig(1))
    mimic = make(cond, cfg=7.0, cfg_rescale=phi, threshold=MimicThreshold(mimic_cfg=7.0))(x, sig(1))
    torch.testing.assert_close(mimic, plain)


def test_mimic_threshold_keeps_mimic_spread_without_extra_forward(x):
    model = MockModel()
    c, n = emb(1.0), emb(-0.3)
    g = make(conditioning(c, negative=n), model=model, cfg=15.0, threshold=MimicThreshold(mimic_cfg=5.0))
    out = g(x, sig(0))
    assert model.calls == [(2 * B, 77)] and g.nfe == 2
    u = pred(x, n)
    mimic = (u + 5.0 * (pred(x, c) - u)).flatten(2)
    spread = lambda t: (t - t.mean(2, keepdim=True)).abs().amax(2)  # noqa: E731
    torch.testing.assert_close(spread(out.flatten(2)), spread(mimic))


def test_bad_inputs_raise():
    cond = conditioning(emb(1.0))
    with pytest.raises(DifftechError, match="non-increasing"):
        Guider(MockModel(), EpsSampling(), cond, torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(DifftechError, match="1-D"):
        Guider(MockModel(), EpsSampling(), cond, torch.tensor([1.0]))
    with pytest.raises(DifftechError, match="no positive terms"):
        Guider(MockModel(), EpsSampling(), Conditioning(terms=[], negative=CondTerm.constant(emb(0.0))), SIGMAS)
    masked = CondTerm(schedule=[(1, emb(1.0))], mask=torch.ones(1, 1, H, W))
    with pytest.raises(DifftechError, match="negative term cannot have a mask"):
        Guider(MockModel(), EpsSampling(), Conditioning(terms=[CondTerm.constant(emb(1.0))], negative=masked), SIGMAS)
    with pytest.raises(DifftechError, match=r"\[1, 1, h, w\]"):
        Guider(MockModel(), EpsSampling(), conditioning(CondTerm([(1, emb(1.0))], mask=torch.ones(H, W))), SIGMAS)
    with pytest.raises(DifftechError, match="own negative but no mask"):
        Guider(MockModel(), EpsSampling(), conditioning(CondTerm([(1, emb(1.0))], negative=masked)), SIGMAS)
    with pytest.raises(DifftechError, match="threshold"):
        Guider(MockModel(), EpsSampling(), cond, SIGMAS, threshold=0.995)
