"""Box grounding: GLIGEN with its gates at 0 is the base model, its fusers switch off at ⌊τ·N⌋, only the
conditional rows get objects; training-free boxes restrict each phrase's attention to its box; bad boxes are
refused naming the fix."""

import math

import pytest
import torch

from difftech_lab.errors import InvalidArgumentError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RUN = dict(seed=2, steps=5, width=32, height=32, progress=False)
BOXES = [("a red", (0.0, 0.0, 0.5, 0.5)), ("star", (0.5, 0.25, 1.0, 1.0))]


@pytest.fixture(scope="module")
def grounded(tiny_folders, tmp_path_factory):
    """The tiny SD 1.x pipeline with a GLIGEN UNet: the same weights plus gated layers and a position net."""
    import shutil

    from diffusers import UNet2DConditionModel

    from difftech_lab import Session

    folder = tmp_path_factory.mktemp("gligen") / "sd15"
    shutil.copytree(tiny_folders["sd15"], folder)
    base = UNet2DConditionModel.from_pretrained(folder / "unet")
    config = {k: v for k, v in base.config.items() if not k.startswith("_")}
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**config, "attention_type": "gated"})
    missing, unexpected = unet.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all("fuser" in k or "position_net" in k for k in missing)
    unet.save_pretrained(folder / "unet")
    return Session.from_pretrained(folder, progress=False)


def fusers(session):
    from diffusers.models.attention import GatedSelfAttentionDense

    return [m for m in session.model.unet.modules() if isinstance(m, GatedSelfAttentionDense)]


def test_gligen_with_its_gates_at_0_is_the_base_model(grounded, tiny_session):
    assert all(float(f.alpha_attn.detach()) == 0 == float(f.alpha_dense.detach()) for f in fusers(grounded))
    plain = tiny_session.generate("a red star", **RUN)
    out = grounded.gligen("a red star", BOXES, scheduled_sampling=1.0, **RUN)
    assert out.recipe.params["method"] == "gligen" and torch.equal(out.latents, plain.latents)


def test_open_gates_ground_the_conditional_rows_for_the_scheduled_steps_and_replay(grounded):
    seen = []
    net = grounded.model.unet.position_net
    hook = net.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs["masks"].clone()),
                                     with_kwargs=True)
    flags = []
    first = fusers(grounded)[0]
    spy = first.register_forward_pre_hook(lambda m, args: flags.append(m.enabled))
    try:
        with torch.no_grad():
            for f in fusers(grounded):
                f.alpha_attn.fill_(1.0)
                f.alpha_dense.fill_(1.0)
        plain = grounded.generate("a red star", **RUN)
        out = grounded.gligen("a red star", BOXES, scheduled_sampling=0.4, **RUN)  # ⌊0.4·5⌋ = 2 grounded steps
        assert not torch.equal(out.latents, plain.latents)
        masks = seen[0]
        assert masks.shape == (2, 30) and masks[0].sum() == 0 and masks[1, :2].sum() == 2 and masks[1, 2:].sum() == 0
        assert len(seen) == 5  # the grounding inputs go in every forward; the gated layers run only while on
        assert flags == [True, True, False, False, False]  # the gated layers run for the first two steps only
        assert torch.equal(grounded.run(out.recipe).latents, out.latents)
        none = grounded.gligen("a red star", BOXES, scheduled_sampling=0.0, **RUN)
        assert torch.equal(none.latents, plain.latents)
    finally:
        hook.remove()
        spy.remove()
        with torch.no_grad():
            for f in fusers(grounded):
                f.alpha_attn.zero_()
                f.alpha_dense.zero_()
    assert all(f.enabled for f in fusers(grounded)) and "forward" not in vars(grounded.model.unet)


def test_training_free_boxes_keep_each_phrase_inside_its_box():
    from diffusers.models.attention_processor import Attention

    from difftech_lab.patches.box_attention import BoxAttention

    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4)
    hidden, text = torch.randn(2, 16, 8), torch.randn(1, 5, 6)
    context = torch.cat([torch.randn(1, 5, 6), text])  # row 0: a negative; row 1: the grounded prompt
    boxes = torch.zeros(1, 8, 8)
    boxes[0, :4, :4] = 1  # the top-left quarter of an 8×8 latent
    state = {"on": True}
    probe = BoxAttention(text, [[2, 3]], boxes, 3.0, state)
    model = type("M", (), {"unet": torch.nn.ModuleDict({"attn2": attn})})()
    with probe(model):
        out = attn(hidden, encoder_hidden_states=context)
    plain = attn(hidden, encoder_hidden_states=context)
    torch.testing.assert_close(out[0], plain[0])  # the negative row is untouched
    q = attn.to_q(hidden[1:]).view(1, 16, 2, 4).transpose(1, 2)
    k = attn.to_k(text).view(1, 5, 2, 4).transpose(1, 2)
    v = attn.to_v(text).view(1, 5, 2, 4).transpose(1, 2)
    logits = q @ k.transpose(-1, -2) * attn.scale
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[:2, :2] = True
    inside = inside.flatten()
    bias = torch.zeros(16, 5)
    bias[:, 2:4] = torch.where(inside[:, None], math.log(3.0), float("-inf"))
    expected = attn.to_out[0](((logits + bias).softmax(-1) @ v).transpose(1, 2).reshape(1, 16, 8))
    torch.testing.assert_close(out[1:], expected)
    state["on"] = False
    with probe(model):
        torch.testing.assert_close(attn(hidden, encoder_hidden_states=context), plain)


def test_training_free_boxes_run_and_replay_and_are_a_no_op_when_unscheduled(tiny_session):
    out = tiny_session.gligen("a red star on grass", BOXES, **RUN)
    assert out.recipe.params["method"] == "boxes" and out.recipe.params["scheduled_sampling"] == 1.0
    assert torch.equal(tiny_session.run(out.recipe).latents, out.latents)
    plain = tiny_session.generate("a red star on grass", **RUN)
    assert not torch.equal(out.latents, plain.latents)
    none = tiny_session.gligen("a red star on grass", BOXES, scheduled_sampling=0.0, **RUN)
    assert torch.equal(none.latents, plain.latents)


@pytest.mark.parametrize("boxes, options, match", [
    ([("a cube", (0, 0, 1, 1))], {}, "does not occur in the prompt"),
    ([("star", (0, 0, 1.2, 1))], {}, r"outside \[0, 1\]"),
    ([("", (0, 0, 1, 1))], {}, "empty phrase"),
    ([("star", (0, 0, 1, 1))] * 31, {}, "at most 30"),
    ([], {}, "non-empty list"),
    ([("star", (0, 0, 1, 1))], {"method": "gligen"}, "no GLIGEN weights"),
    ([("star", (0, 0, 1, 1))], {"scheduled_sampling": 2}, "scheduled_sampling 2"),
    ([("star", (0, 0, 1, 1))], {"boost": 0}, "boost 0"),
    (["star"], {}, r"box 0 must be \(phrase"),
])
def test_bad_boxes_are_refused(tiny_session, boxes, options, match):
    with pytest.raises(InvalidArgumentError, match=match):
        tiny_session.gligen("a red star", boxes, **{**RUN, **options})


def test_training_free_boxes_run_on_the_sdxl_layout(tiny_folders):
    from difftech_lab import Session

    session = Session.from_pretrained(tiny_folders["sdxl"], progress=False)
    plain = session.generate("a red star on grass", **RUN)
    out = session.gligen("a red star on grass", BOXES, **RUN)
    assert torch.isfinite(out.latents).all() and not torch.equal(out.latents, plain.latents)
