"""Regional prompting: one region over the canvas is the plain prompt, masks and boxes agree, each pixel follows
its region's prompt in both modes, recipes replay, and bad regions are refused naming the fix."""

import numpy as np
import pytest
import torch

from difftech_lab.conditioning.types import Conditioning, CondTerm, Embedding
from difftech_lab.errors import InvalidArgumentError, ShapeError
from difftech_lab.patches.regional import RegionalAttention, layer_size
from difftech_lab.sampling.guider import Guider
from difftech_lab.images import box_mask
from difftech_lab.techniques.regional import MAX_REGIONS, region_shares

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RUN = dict(seed=3, steps=3, width=32, height=32, progress=False)
LEFT = np.zeros((32, 32), np.float32)
LEFT[:, :16] = 1


@pytest.mark.parametrize("mode", ["attention", "latent"])
def test_one_region_over_the_canvas_with_base_ratio_0_is_the_plain_prompt(tiny_session, mode):
    plain = tiny_session.generate("a red star", negative_prompt="blur", **RUN)
    for area in (np.ones((32, 32), np.float32), (0.0, 0.0, 1.0, 1.0)):
        out = tiny_session.regional([("a red star", area)], "a blue cube", mode, negative_prompt="blur",
                                    base_ratio=0.0, **RUN)
        assert torch.equal(out.latents, plain.latents)


@pytest.mark.parametrize("mode", ["attention", "latent"])
def test_two_regions_with_one_prompt_are_the_plain_prompt(tiny_session, mode):
    plain = tiny_session.generate("a red star", **RUN)
    out = tiny_session.regional([("a red star", LEFT), ("a red star", 1 - LEFT)], "a blue cube", mode,
                                base_ratio=0.0, **RUN)
    torch.testing.assert_close(out.latents, plain.latents, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["attention", "latent"])
def test_a_box_and_its_mask_give_the_same_image_and_recipes_replay(tiny_session, mode):
    regions = [{"prompt": "a red star", "box": (0.0, 0.0, 0.5, 1.0), "negative_prompt": "green"},
               ("a blue cube", (0.5, 0.25, 1.0, 0.75), 2.0)]
    by_box = tiny_session.regional(regions, "a field", mode, **RUN)
    as_masks = [{"prompt": "a red star", "mask": LEFT, "negative_prompt": "green"},
                ("a blue cube", box_mask((0.5, 0.25, 1.0, 0.75), 32, 32), 2.0)]
    by_mask = tiny_session.regional(as_masks, "a field", mode, **RUN)
    assert torch.equal(by_box.latents, by_mask.latents)
    again = tiny_session.run(by_box.recipe)
    assert torch.equal(again.latents, by_box.latents)
    assert by_box.recipe.technique == "regional" and by_box.recipe.params["mode"] == mode


def test_the_regions_change_the_image_and_the_modes_differ(tiny_session):
    plain = tiny_session.generate("a field", **RUN)
    att = tiny_session.regional([("a red star", LEFT)], "a field", "attention", **RUN)
    lat = tiny_session.regional([("a red star", LEFT)], "a field", "latent", **RUN)
    assert not torch.equal(att.latents, plain.latents) and not torch.equal(lat.latents, plain.latents)
    assert not torch.allclose(att.latents, lat.latents)
    assert lat.nfe == 3 * 3 and att.nfe == 2 * 3  # latent: a pass per prompt; attention: one


def test_box_masks_hold_the_pixel_centres_inside():
    m = box_mask((0.25, 0.0, 0.5, 0.5), 8, 4)
    expected = np.zeros((4, 8), np.float32)
    expected[:2, 2:4] = 1
    np.testing.assert_array_equal(m, expected)


def test_shares_sum_to_one_normalise_overlaps_and_leave_the_rest_to_the_base():
    a = np.zeros((4, 4), np.float32)
    a[:, :2] = 1
    b = np.zeros((4, 4), np.float32)
    b[:, 1:3] = 1
    shares = region_shares([a, b], [1.0, 3.0], 0.25, (4, 4))
    torch.testing.assert_close(shares.sum(0), torch.ones(4, 4))
    assert shares[0, 0, 3] == 1 and shares[1, 0, 3] == 0 == shares[2, 0, 3]  # uncovered: the base alone
    assert shares[1, 0, 0] == pytest.approx(0.75) and shares[0, 0, 0] == pytest.approx(0.25)  # base ratio kept
    assert shares[1, 0, 1] == pytest.approx(0.75 / 4) and shares[2, 0, 1] == pytest.approx(0.75 * 3 / 4)  # weights


def test_the_guider_blends_each_region_against_its_own_negative_under_its_mask():
    """A fake network whose x̂0 is each embedding's constant: the guided x̂0 is u' + cfg·Σ m_k·(c_k − u_k) pixelwise."""
    def const(v):
        return Embedding(torch.full((1, 2, 3), float(v)))

    def model(x, sigma, hidden, pooled=None):
        return hidden.mean(dim=(1, 2)).view(-1, 1, 1, 1).expand_as(x).clone()

    left = torch.zeros(1, 1, 2, 4)
    left[..., :2] = 1
    terms = [CondTerm([(99, const(1.0))], mask=1 - left), CondTerm([(99, const(5.0))], mask=left,
                                                                     negative=CondTerm([(99, const(2.0))]))]
    sampling = type("S", (), {"denoised": None, "prediction": None})()
    guider = Guider(model, sampling, Conditioning(terms, CondTerm([(99, const(0.0))])), torch.tensor([1.0, 0.0]),
                    cfg=3.0)
    x0 = guider(torch.zeros(1, 4, 2, 4), torch.tensor([1.0]))
    assert torch.allclose(x0[..., 2:], torch.full_like(x0[..., 2:], 0 + 3 * 1.0))  # base: u=0, c=1
    assert torch.allclose(x0[..., :2], torch.full_like(x0[..., :2], 2 + 3 * (5.0 - 2.0)))  # own negative 2
    assert guider.nfe == 4


def test_the_attention_processor_gives_each_pixel_its_regions_attention():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4)
    hidden = torch.randn(2, 16, 8)  # a 4×4 layer of an 8×8 latent
    a, b = torch.randn(2, 5, 6), torch.randn(2, 7, 6)
    shares = torch.zeros(2, 8, 8)
    shares[0, :, :4], shares[1, :, 4:] = 1, 1
    regional = RegionalAttention([[5, 7]], shares)
    model = type("M", (), {"unet": torch.nn.ModuleDict({"attn2": attn})})()
    with regional(model):
        out = attn(hidden, encoder_hidden_states=torch.cat([a, b], dim=1))
    plain_a, plain_b = attn(hidden, encoder_hidden_states=a), attn(hidden, encoder_hidden_states=b)
    left = torch.zeros(4, 4, dtype=torch.bool)
    left[:, :2] = True
    left = left.flatten()
    torch.testing.assert_close(out[:, left], plain_a[:, left])
    torch.testing.assert_close(out[:, ~left], plain_b[:, ~left])
    assert layer_size((8, 8), 16) == (4, 4) and layer_size((9, 7), 20) == (5, 4)
    with pytest.raises(ShapeError, match="no halving"):
        layer_size((8, 8), 15)


def test_sdxl_layouts_run_both_modes(tiny_folders):
    from difftech_lab import Session

    session = Session.from_pretrained(tiny_folders["sdxl"], progress=False)
    plain = session.generate("a red star", **RUN)
    for mode in ("attention", "latent"):
        same = session.regional([("a red star", (0, 0, 1, 1))], mode=mode, base_ratio=0.0, **RUN)
        assert torch.equal(same.latents, plain.latents)
        two = session.regional([("a red star", LEFT), ("a cube", 1 - LEFT)], "a field", mode, **RUN)
        assert torch.isfinite(two.latents).all() and not torch.equal(two.latents, plain.latents)


@pytest.mark.parametrize("regions, options, error, match", [
    ([("a star", np.ones((16, 16)))], {}, ShapeError, r"region 0: mask has shape \(16, 16\).*32×32"),
    ([("a star", (0.0, 0.0, 1.5, 1.0))], {}, InvalidArgumentError, "outside \\[0, 1\\]"),
    ([("a star", (0.5, 0.0, 0.5, 1.0))], {}, InvalidArgumentError, "is empty"),
    ([("", LEFT)], {}, InvalidArgumentError, "region 0 has an empty prompt"),
    ([("a star", LEFT * 2)], {}, InvalidArgumentError, r"region 0: mask values"),
    ([("a star", LEFT * 0)], {}, InvalidArgumentError, "mask is empty"),
    ([("a star", LEFT)] * (MAX_REGIONS + 1), {}, InvalidArgumentError, f"at most {MAX_REGIONS}"),
    ([("a star", LEFT)], {"mode": "pixels"}, InvalidArgumentError, "mode 'pixels'"),
    ([("a star", LEFT)], {"base_ratio": 1.5}, InvalidArgumentError, "base_ratio 1.5"),
    ([("a star AND a cube", LEFT)], {}, InvalidArgumentError, "region 0 uses AND"),
    ([("a star", LEFT, -1)], {}, InvalidArgumentError, "weight -1"),
    ([{"prompt": "a star", "mask": LEFT, "box": (0, 0, 1, 1)}], {}, InvalidArgumentError, "exactly one of"),
    ([], {}, InvalidArgumentError, "non-empty list"),
])
def test_bad_regions_are_refused(tiny_session, regions, options, error, match):
    with pytest.raises(error, match=match):
        tiny_session.regional(regions, **{**RUN, **options})
    tiny_session.regional([("a star", LEFT)], **RUN)  # and the session goes on
