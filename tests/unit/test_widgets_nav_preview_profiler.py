"""LatentNavigator, StepPreview and ProfilerView in Python: state, background renders, errors, repr."""

import io
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from difftech_lab.conditioning.types import Embedding
from difftech_lab.errors import CancelledError, InvalidArgumentError, ShapeError
from difftech_lab.sampling.events import StepEvent
from difftech_lab.techniques.latents import navigator_weights, spherical_blend


@dataclass
class FakeResult:
    images: list
    latents: torch.Tensor
    recipe: SimpleNamespace
    trajectory: list | None = None
    x_init: torch.Tensor | None = None
    nfe: int = 0
    timings: dict = field(default_factory=dict)


class FakeSession:
    """Session's contract on 8×8 latents: the image is the noise plus the prompt's mean, squashed to RGB."""

    default_size = (64, 64)

    model_sampling = SimpleNamespace(scale_input=lambda x, sigma: x / math.sqrt(sigma**2 + 1))

    def __init__(self):
        self.calls = []
        self.cancelled = False

    def latent_shape(self, width, height):
        return 4, height // 8, width // 8

    def noise(self, seed, width=None, height=None, batch_size=1):
        shape = self.latent_shape(width or 64, height or 64)
        return torch.randn((batch_size, *shape), generator=torch.Generator().manual_seed(seed))

    def encode_prompt(self, text):
        g = torch.Generator().manual_seed(sum(map(ord, text)) + len(text))
        return Embedding(hidden=torch.randn(1, 3, 8, generator=g))

    def preview(self, latents):
        return [Image.fromarray((torch.sigmoid(z[:3]).permute(1, 2, 0).numpy() * 255).astype(np.uint8))
                for z in latents]

    def decode(self, latents):
        return self.preview(latents)

    def generate(self, prompt, negative_prompt="", *, width=64, height=64, steps=3, noise=None, seed=0,
                 callback=None, keep_trajectory=False, progress=True, cfg=7.0, sampler="euler", start=0, x=None):
        cfg = 7.0 if cfg is None else cfg  # as Session: None is the model's recommended scale
        self.calls.append(dict(prompt=prompt, steps=steps, cfg=cfg, noise=noise))
        embedding = prompt if isinstance(prompt, Embedding) else self.encode_prompt(prompt)
        x = (noise if noise is not None else self.noise(seed, width, height)) if x is None else x
        x_init, trajectory = x.clone(), []
        for i in range(start, steps):
            denoised = x * 0.5 + embedding.hidden.mean() + 0.01 * cfg
            x = 0.5 * (x + denoised)
            event = StepEvent(i=i, steps=steps, sigma=1.0 / (i + 1), sigma_hat=1.0 / (i + 1), x=x.clone(),
                              denoised=denoised.clone(), nfe=2 * (i + 1), elapsed=0.0)
            trajectory.append(event)
            if callback is not None:
                callback(event)
            if self.cancelled:
                self.cancelled = False
                raise CancelledError(f"run cancelled at step {i}")
        recipe = SimpleNamespace(prompt=prompt if isinstance(prompt, str) else "<embedding>", steps=steps, cfg=cfg)
        return FakeResult(images=self.preview(x), latents=x, recipe=recipe,
                          trajectory=trajectory if keep_trajectory else None, x_init=x_init)

    def branch(self, result, step, callback=None, keep_trajectory=False, progress=None, **overrides):
        x = result.x_init if step == 0 else result.trajectory[step - 1].x
        child = self.generate(result.recipe.prompt, steps=result.recipe.steps, x=x, start=step, callback=callback,
                              keep_trajectory=keep_trajectory, cfg=overrides.get("cfg", result.recipe.cfg))
        if keep_trajectory:  # as Session.branch: the parent's earlier steps come first
            child.trajectory = list(result.trajectory[:step]) + list(child.trajectory)
            child.x_init = result.x_init
        return child

    def cancel(self):
        self.cancelled = True


def _png(data) -> Image.Image:
    return Image.open(io.BytesIO(bytes(data)))


# ------------------------------------------------------------------------------------------ LatentNavigator

@pytest.fixture
def navigator():
    from difftech_lab.widgets.latent_navigator import LatentNavigator

    nav = LatentNavigator(FakeSession(), [1, 2, 3, 4], prompt="a cat", steps=2)
    assert nav.wait(10)
    return nav


def test_navigator_renders_thumbnails_and_the_centre(navigator):
    assert len(navigator.thumbnails) == 4 and all(_png(t).size == (8, 8) for t in navigator.thumbnails)
    assert navigator.preview_point == [0.5, 0.5]
    assert navigator.weights == pytest.approx([0.25] * 4)
    assert navigator.typical_norm == pytest.approx(math.sqrt(4 * 8 * 8))
    assert repr(navigator) == "LatentNavigator(4 anchors)" and navigator.error == ""


def test_navigator_latent_is_the_spherical_blend_of_the_anchor_noises(navigator):
    navigator.point = [0.2, 0.7]
    session = navigator.session
    noises = [session.noise(s, 64, 64) for s in (1, 2, 3, 4)]
    expected = spherical_blend(noises, navigator_weights((0.2, 0.7), navigator.anchor_positions))
    assert torch.allclose(navigator.latent, expected)
    assert navigator.wait(10)
    assert navigator.norm == pytest.approx(float(expected.norm()), rel=1e-5)
    assert torch.allclose(session.calls[-1]["noise"], expected)


def test_navigator_at_an_anchor_reproduces_that_seed(navigator):
    navigator.point = [1.0, 1.0]  # anchor 2 (seed 3) sits at the bottom-right corner
    assert torch.allclose(navigator.latent, navigator.session.noise(3, 64, 64), atol=1e-5)
    assert navigator.wait(10)
    assert navigator.preview == navigator.thumbnails[2]


def test_navigator_linear_noise_blend_loses_norm(navigator):
    navigator.noise_blend = "linear"
    assert navigator.wait(10)
    assert navigator.norm / navigator.typical_norm < 0.75


def test_navigator_prompt_anchors_blend_embeddings_linearly():
    from difftech_lab.widgets.latent_navigator import LatentNavigator

    session = FakeSession()
    nav = LatentNavigator(session, ["a cat", "a dog"], seed=5, steps=1)
    nav.point = [0.25, 0.5]
    a, b = session.encode_prompt("a cat").hidden, session.encode_prompt("a dog").hidden
    assert torch.allclose(nav.embedding.hidden, 0.75 * a + 0.25 * b)
    assert torch.allclose(nav.latent, session.noise(5, 64, 64), atol=1e-6)  # both anchors share seed 5
    nav.embedding_blend = "slerp"
    assert not torch.allclose(nav.embedding.hidden, 0.75 * a + 0.25 * b)
    assert nav.wait(10)
    assert nav.recipe.prompt == "<embedding>"
    assert nav.navigation["anchors"][1] == {"label": "a dog", "prompt": "a dog"}


def test_navigator_only_the_latest_point_is_applied():
    from difftech_lab.widgets.latent_navigator import LatentNavigator

    nav = LatentNavigator(FakeSession(), [1, 2], steps=2)
    for x in np.linspace(0, 1, 15):
        nav.point = [float(x), 0.5]
    assert nav.wait(10)
    assert nav.preview_point == [1.0, 0.5]
    assert nav.preview == nav.thumbnails[1]


def test_navigator_generate_uses_the_point():
    from difftech_lab.widgets.latent_navigator import LatentNavigator

    session = FakeSession()
    nav = LatentNavigator(session, [{"seed": 1, "prompt": "x"}, {"latent": session.noise(9, 64, 64)[0]}], steps=1)
    nav.point = [0.0, 0.5]  # anchor 0: seed 1, prompt "x"
    # a preview of the new point is rendering on the widget's worker while generate runs in this thread, so the
    # session's last call may be either: check the generation's own result, and pick its call out by its steps
    result = nav.generate(steps=3)
    assert result.recipe.steps == 3 and torch.allclose(result.x_init, session.noise(1, 64, 64))
    assert result.images[0].size == (8, 8)
    assert nav.wait(10)
    generated = [call for call in session.calls if call["steps"] == 3]  # the previews run with steps=1
    assert len(generated) == 1 and torch.allclose(generated[0]["noise"], session.noise(1, 64, 64))
    assert torch.allclose(generated[0]["prompt"].hidden, session.encode_prompt("x").hidden)
    assert nav.anchor_labels == ["seed 1 · x", "latent 1"]


def test_navigator_bad_anchors_are_refused_by_name():
    from difftech_lab.widgets.latent_navigator import LatentNavigator

    with pytest.raises(InvalidArgumentError, match="2 to 4 anchors"):
        LatentNavigator(FakeSession(), [1])
    with pytest.raises(InvalidArgumentError, match="anchor 1 is float"):
        LatentNavigator(FakeSession(), [1, 2.5])
    with pytest.raises(ShapeError, match="anchor 0's latent has shape"):
        LatentNavigator(FakeSession(), [torch.zeros(1, 4, 4, 4), 1])
    with pytest.raises(InvalidArgumentError, match="convex position"):
        LatentNavigator(FakeSession(), [1, 2, 3], positions=[(0, 0), (0.5, 0.5), (1, 1)])


def test_navigator_render_error_is_shown_in_the_widget():
    from difftech_lab.widgets.latent_navigator import LatentNavigator

    session = FakeSession()
    nav = LatentNavigator(session, [1, 2], steps=1)
    assert nav.wait(10)

    def broken(*args, **kwargs):
        raise InvalidArgumentError("cfg -1 is negative")

    session.generate = broken
    nav.point = [0.1, 0.5]
    assert nav.wait(10)
    assert "cfg -1 is negative" in nav.error


# --------------------------------------------------------------------------------------------- StepPreview

class _SettingsSession(FakeSession):
    """FakeSession whose Results carry ``recipe.settings`` as Session's do, a cfg curve kept as given."""

    def generate(self, prompt, *args, cfg=7.0, **kwargs):
        curve = list(cfg) if isinstance(cfg, (list, tuple)) else None
        result = super().generate(prompt, *args, cfg=curve[0] if curve else cfg, **kwargs)
        result.recipe.settings = SimpleNamespace(cfg=curve or result.recipe.cfg, steps=result.recipe.steps)
        return result


def _press_stop_at(preview, session, step):
    """Press Stop while step ``step``'s preview is made (the session then cancels after that step)."""
    made, preview_of = [], session.preview

    def preview_then_stop(latents):
        made.append(1)
        if len(made) == step + 1:
            preview.stop_request += 1
        return preview_of(latents)

    session.preview = preview_then_stop


def _events(steps=4, shape=(1, 4, 8, 8)):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    return [StepEvent(i=i, steps=steps, sigma=float(steps - i), sigma_hat=float(steps - i), x=x * (steps - i),
                      denoised=x.roll(i, -1), nfe=i + 1, elapsed=0.0) for i in range(steps)]


def test_step_preview_as_a_callback_shows_live_then_publishes_the_trajectory():
    from difftech_lab.widgets.step_preview import StepPreview

    preview = StepPreview()
    seen = []
    for event in _events(4):
        preview(event)
        seen.append((preview.live_step, preview.running, len(preview.x0_frames)))
    assert seen == [(0, True, 0), (1, True, 0), (2, True, 0), (3, False, 4)]
    assert preview.sigmas == [4.0, 3.0, 2.0, 1.0] and preview.step == 3 and preview.steps == 4
    assert len(set(preview.x0_frames)) == 4  # x̂0 differs every step
    assert _png(preview.x0_frames[0]).size == (8, 8) and repr(preview) == "StepPreview(steps=4)"


def test_step_preview_scales_x_t_to_unit_variance():
    from difftech_lab.widgets.step_preview import StepPreview

    preview = StepPreview()
    for event in _events(3):
        preview(event)
    # x_t = x·(steps-i) at σ = steps-i: after dividing by √(σ²+1) every frame is nearly the same picture
    a, b = (np.asarray(_png(f), dtype=float) for f in preview.xt_frames[:2])
    assert np.abs(a - b).mean() < 3


def test_step_preview_run_uses_the_session_preview_and_keeps_the_result():
    from difftech_lab.widgets.step_preview import StepPreview

    session = _SettingsSession()
    preview = StepPreview(session)
    preview.run("a cat", steps=5, cfg=2.0)
    assert preview.wait(10)
    assert preview.error == "" and len(preview.x0_frames) == 5 and not preview.running
    assert len(preview.result.trajectory) == 5
    last = preview.result.trajectory[-1]
    assert _png(preview.x0_frames[-1]).tobytes() == session.preview(last.denoised)[0].tobytes()
    x_t = session.preview(last.x / math.sqrt(last.sigma**2 + 1))[0]
    assert _png(preview.xt_frames[-1]).tobytes() == x_t.tobytes()


def test_step_preview_branch_keeps_earlier_frames_and_changes_later_ones():
    from difftech_lab.widgets.step_preview import StepPreview

    session = _SettingsSession()
    preview = StepPreview(session)
    preview.run("a cat", steps=5, cfg=2.0)
    assert preview.wait(10)
    before = list(preview.x0_frames)
    parent = preview.result
    preview.step = 2
    preview.branch_cfg = 9.0
    preview.branch_request += 1  # what the Branch button does
    assert preview.wait(10)
    assert preview.error == "" and preview.branched_from == 2
    assert preview.x0_frames[:2] == before[:2] and preview.x0_frames[2] != before[2]
    assert len(preview.x0_frames) == 5 and session.calls[-1]["cfg"] == 9.0
    assert [e.i for e in preview.result.trajectory] == [0, 1, 2, 3, 4]
    assert preview.result.trajectory[1] is parent.trajectory[1]
    # the run it came from stays, for the A/B view: its Result and its final x̂0
    assert preview.original is parent and preview.original_x0 == before[-1]
    assert preview.step == 4, "a finished branch shows its last step"


def test_step_preview_branch_cfg_starts_at_the_runs_own():
    from difftech_lab.widgets.step_preview import StepPreview

    preview = StepPreview(_SettingsSession())
    preview.run("a cat", steps=3, cfg=3.0)
    assert preview.wait(10)
    assert preview.branch_cfg == 3.0
    preview.run("a cat", steps=3, cfg=[4.5, 2.0, 1.0])
    assert preview.wait(10)
    assert preview.branch_cfg == 4.5, "a cfg curve: its first value"


def test_step_preview_new_run_clears_the_branch_settings_and_comparison():
    from difftech_lab.widgets.step_preview import StepPreview

    session = _SettingsSession()
    preview = StepPreview(session)
    preview.run("a cat", steps=4, cfg=3.0)
    assert preview.wait(10)
    preview.branch_prompt, preview.branch_cfg = "a dog", 11.0
    preview.branch(1)
    assert preview.wait(10) and preview.branched_from == 1 and preview.original_x0
    preview.run("a bird", steps=4, cfg=2.0)
    assert preview.wait(10)
    assert preview.branch_prompt == "" and preview.branch_cfg == 2.0
    assert preview.branched_from == -1 and preview.original is None and preview.original_x0 == b""
    # a run shown through the callback is a new run too
    session.generate("a fish", steps=4, callback=preview)
    preview.branch_prompt = "a cow"
    session.generate("a fish", steps=4, callback=preview)
    assert preview.branch_prompt == ""


def test_step_preview_branch_without_a_run_is_reported_in_the_widget():
    from difftech_lab.widgets.step_preview import StepPreview

    preview = StepPreview(FakeSession())
    preview.branch_request += 1
    assert "nothing to branch from yet" in preview.error
    with pytest.raises(InvalidArgumentError, match="needs a session"):
        StepPreview().run("x")


def test_step_preview_stop_keeps_the_frames_made_without_an_error():
    from difftech_lab.widgets.step_preview import StepPreview

    session = _SettingsSession()
    preview = StepPreview(session)
    _press_stop_at(preview, session, 2)
    preview.run("a cat", steps=6)
    assert preview.wait(10)
    assert preview.error == "" and not preview.running
    assert preview.stopped_at == 2 and len(preview.x0_frames) == 3 and preview.step == 2
    assert preview.sigmas == [1.0, 1 / 2, 1 / 3]
    assert preview.result is None
    preview.branch_request += 1
    assert "stopped at step 3" in preview.error
    preview.run("a cat", steps=6)
    assert preview.wait(10)
    assert preview.stopped_at == -1 and len(preview.x0_frames) == 6 and preview.error == ""


# -------------------------------------------------------------------------------------------- ProfilerView

def _report():
    from difftech_lab.profiling import MemorySample, OpRow, ProfileReport, StageSpan

    ops = [OpRow("aten::addmm", 10, 500.0, 800.0, 4096, 4096), OpRow("difftech/model", 2, 50.0, 900.0, 0, 4096)]
    spans = [StageSpan("step", 0, 1.0, 2.0, 0.5), StageSpan("model", 0, 1.2, 1.5, 1.5),
             StageSpan("decode", None, 3.5, 0.5, 0.5)]
    memory = [MemorySample(0.0, 0, "cpu"), MemorySample(1.0, 4096, "cpu")]
    return ProfileReport(ops=ops, stages=spans, memory=memory, steps=1, trace_json=b'{"traceEvents": []}')


def test_profiler_view_syncs_the_report_and_sends_the_trace_on_request():
    from difftech_lab.widgets.profiler_view import ProfilerView

    view = ProfilerView(_report())
    assert [r["name"] for r in view.ops] == ["aten::addmm", "difftech/model"] and view.steps == 1
    assert [r["label"] for r in view.timeline] == ["step 0", "decode"]
    assert view.timeline[0]["stages"] == {"step": 0.5, "model": 1.5}
    assert view.trace == b"", "the trace is not sent before it is asked for"
    view.download_request += 1
    assert view.trace == b'{"traceEvents": []}'
    assert repr(view) == "ProfilerView(steps=1, ops=2)"


def test_profiler_view_report_can_be_replaced_and_refuses_other_types():
    from difftech_lab.widgets.profiler_view import ProfilerView

    view = ProfilerView()
    view.download_request += 1
    assert "no profile to download" in view.error
    view.report = _report()
    assert len(view.memory) == 2 and view.trace == b""
    with pytest.raises(InvalidArgumentError, match="got dict"):
        view.report = {"ops": []}
    with pytest.raises(Exception):
        view.sort_by = "not_a_column"


def test_step_preview_callback_error_reaches_the_widget_and_the_caller():
    from difftech_lab.widgets.step_preview import StepPreview

    session = FakeSession()
    session.preview = lambda latents: (_ for _ in ()).throw(ShapeError("latent has 3 channels"))
    preview = StepPreview(session)
    with pytest.raises(ShapeError):
        preview(_events(2)[0])
    assert "latent has 3 channels" in preview.error


def test_profiler_view_row_limit_is_at_least_one_row():
    from difftech_lab.widgets.profiler_view import ProfilerView

    view = ProfilerView(_report(), row_limit=1)
    with pytest.raises(Exception, match="row_limit"):
        view.row_limit = 0
