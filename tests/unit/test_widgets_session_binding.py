"""The mask and schedule widgets bound to a real (tiny) Session: sizes, the model's schedule, used σ's."""

import numpy as np
import pytest
import torch

from difftech_lab.widgets.mask_painter import MaskPainter
from difftech_lab.widgets.schedule_plotter import SchedulePlotter

pytestmark = pytest.mark.slow   # the first generation on the tiny model warms up the text encoder and VAE


def test_mask_painter_over_a_result_feeds_inpainting_at_latent_size(tiny_session):
    result = tiny_session.generate("a cat", width=64, height=64, steps=3, seed=1)
    painter = MaskPainter(result, session=tiny_session)
    assert (painter.width, painter.height) == (64, 64)
    mask = np.zeros((64, 64), np.float32)
    mask[:, 32:] = 1.0
    painter.mask = mask
    assert painter.mask_at().shape == tiny_session.latent_shape(64, 64)[1:]
    inpainted = tiny_session.inpaint(result.images[0], painter.mask, "a dog", steps=3, seed=2)
    kept = np.asarray(inpainted.images[0], np.float32)[:, :24]
    original = np.asarray(result.images[0], np.float32)[:, :24]
    assert np.abs(kept - original).mean() < np.abs(np.asarray(inpainted.images[0], np.float32)[:, 40:]
                                                   - np.asarray(result.images[0], np.float32)[:, 40:]).mean()


def test_schedule_plotter_shows_the_models_schedule_and_what_a_run_used(tiny_session):
    result = tiny_session.generate("a cat", width=64, height=64, steps=4, seed=1)
    plotter = SchedulePlotter(session=tiny_session, result=result, steps=4, schedule="default")
    assert torch.allclose(plotter.sigmas, result.sigmas)          # "model" is the session's default schedule
    assert plotter.used["sigma"] == [float(s) for s in result.sigmas_used]
    assert plotter.sigma_max == tiny_session.model_sampling.sigma_max
