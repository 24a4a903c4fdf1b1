"""The seam: a technique defined here alone plugs into the Session, its Recipe and ``session.run``; plans carry
wrappers, patches, guidance terms and subscribers; patches are always undone."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from difftech_lab import InvalidArgumentError, Recipe, read_recipe
from difftech_lab.sampling.run import Plan
from difftech_lab.techniques import TECHNIQUES, get_technique, register
from difftech_lab.techniques.base import Technique, TechniqueParams
from difftech_lab.techniques.txt2img import Txt2Img

FAST = dict(steps=3, width=32, height=32, progress=False)


class ScaleDenoised:
    """A denoiser wrapper that scales x̂0: the smallest technique that changes what the network predicts."""

    def __init__(self, inner, factor):
        self.inner, self.factor = inner, factor

    def __call__(self, x, sigma, hidden, pooled=None):
        return self.inner(x, sigma, hidden, pooled) * self.factor


@pytest.fixture
def scaled_technique():
    @register
    class Scaled(Technique):
        name = "test_scaled"

        @dataclass
        class Params(TechniqueParams):
            prompt: str = ""
            factor: float = 1.0

        def plan(self, session, settings, params) -> Plan:
            plan = Txt2Img().plan(session, settings, Txt2Img.Params(params.prompt))
            plan.wrappers.append(lambda inner: ScaleDenoised(inner, params.factor))
            return plan

    yield get_technique("test_scaled")
    del TECHNIQUES["test_scaled"]


def _same(a, b):
    return torch.equal(a.latents, b.latents) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images))


def test_a_technique_defined_in_a_test_runs_saves_and_reproduces(tiny_session, scaled_technique, tmp_path):
    result = scaled_technique.call(tiny_session, scaled_technique.Params("a red circle", 0.5), dict(seed=3, **FAST))
    assert result.recipe.technique == "test_scaled" and result.recipe.params["factor"] == 0.5
    path = result.save(tmp_path / "scaled.png")
    again = tiny_session.run(read_recipe(path), progress=False)
    assert _same(again, result)
    plain = tiny_session.generate("a red circle", seed=3, **FAST)
    assert not torch.equal(plain.latents, result.latents)


def test_the_no_op_setting_reproduces_the_plain_run(tiny_session, scaled_technique):
    one = scaled_technique.call(tiny_session, scaled_technique.Params("a red circle", 1.0), dict(seed=3, **FAST))
    assert _same(one, tiny_session.generate("a red circle", seed=3, **FAST))


def test_unknown_arguments_name_the_technique_and_what_it_takes(tiny_session):
    with pytest.raises(InvalidArgumentError, match="txt2img has no argument 'stepz'.*steps"):
        tiny_session.generate("x", stepz=3)


def test_every_subscriber_sees_every_step_in_order(tiny_session):
    seen = []
    result = tiny_session.generate("x", seed=1, subscribers=[lambda e: seen.append(("a", e.i)),
                                                             lambda e: seen.append(("b", e.i))],
                                   callback=lambda e: seen.append(("cb", e.i)), **FAST)
    assert seen == [(who, i) for i in range(3) for who in ("a", "b", "cb")]
    assert result.nfe == 6


def test_a_guidance_term_refines_the_guided_prediction_and_counts_its_evaluations(tiny_session):
    def extra_forward(x0, context):
        (again,) = context.forward(context.x, context.sigma, context.embeddings[1:2])
        return x0 + 0.0 * again  # an extra prediction, added with weight 0: the image must not change

    class WithTerm(Txt2Img):
        name = "test_with_term"

        def plan(self, session, settings, params):
            plan = super().plan(session, settings, params)
            plan.guidance.append(extra_forward)
            return plan

    plain = tiny_session.generate("x", seed=1, **FAST)
    guided = WithTerm().call(tiny_session, WithTerm.Params("x"), dict(seed=1, **FAST))
    assert _same(guided, plain)
    assert guided.nfe == plain.nfe + 3  # one more network evaluation per step


def test_patches_are_undone_after_the_block_and_after_an_error(tiny_session):
    from diffusers.models.attention_processor import AttnProcessor

    unet = tiny_session.model.unet
    before = {k: type(v) for k, v in unet.attn_processors.items()}
    with tiny_session.patched(attention="classic"):
        assert all(isinstance(p, AttnProcessor) for p in unet.attn_processors.values())
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before
    with pytest.raises(RuntimeError, match="boom"):
        with tiny_session.patched(attention="sliced"):
            raise RuntimeError("boom")
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before
    assert tiny_session.active_patches == []


def test_a_patch_is_recorded_and_entered_again_by_run(tiny_session):
    plain = tiny_session.generate("a star", seed=2, **FAST)
    with tiny_session.patched(attention="classic"):
        classic = tiny_session.generate("a star", seed=2, **FAST)
    assert classic.recipe.patches == [{"name": "attention", "options": {"backend": "classic", "slice_size": 1}}]
    # the explicit softmax and the fused kernel agree to float rounding, not bit for bit
    torch.testing.assert_close(classic.latents, plain.latents, atol=1e-4, rtol=1e-4)
    assert _same(tiny_session.run(Recipe.from_json(classic.recipe.to_json())), classic)


def test_unknown_patch_names_the_known_ones(tiny_session):
    from difftech_lab import UnknownNameError

    with pytest.raises(UnknownNameError, match="patch 'tome2'.*attention"):
        with tiny_session.patched(tome2=0.5):
            pass
    with pytest.raises(InvalidArgumentError, match="attention backend 'flash3'"):
        with tiny_session.patched(attention="flash3"):
            pass


def test_unknown_technique_in_a_recipe(tiny_session):
    from difftech_lab import UnknownNameError

    recipe = tiny_session.generate("x", seed=0, **FAST).recipe
    recipe.technique = "nope"
    with pytest.raises(UnknownNameError, match="technique 'nope'.*txt2img"):
        tiny_session.run(recipe)


def test_session_stays_small():
    from pathlib import Path

    import difftech_lab.session as module

    assert len(Path(module.__file__).read_text().splitlines()) <= 250
