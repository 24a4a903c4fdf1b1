"""The latent-space techniques on the SDXL layout (two text encoders, a pooled vector per prompt): paths, moves and
composition run, keep their endpoints and replay."""

import numpy as np
import pytest
import torch

from difftech_lab.techniques import latents

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RUN = dict(steps=3, width=32, height=32, progress=False)


@pytest.fixture(scope="module")
def sdxl(tiny_folders):
    from difftech_lab import Session

    return Session.from_pretrained(tiny_folders["sdxl"], progress=False)


def test_a_prompt_and_noise_path_keeps_its_endpoints_and_replays(sdxl):
    path = latents.interpolate(sdxl, ("a red star", 1), ("a blue cube", 2), [0.0, 0.5, 1.0], **RUN)
    first = sdxl.generate("a red star", seed=1, **RUN)
    assert len(path.images) == 3 and torch.isfinite(path.latents).all()
    torch.testing.assert_close(path.latents[:1], first.latents, rtol=1e-4, atol=1e-4)
    assert torch.equal(sdxl.run(path.recipe).latents, path.latents)
    moved = latents.move(sdxl, ("a red star", 1), [0.0, 1.0], towards="a blue star", away="a red star", **RUN)
    assert torch.isfinite(moved.latents).all() and not torch.equal(moved.latents[0], moved.latents[1])


def test_composition_runs_and_replays(sdxl):
    left = np.zeros((32, 32), np.float32)
    left[:, :16] = 1
    out = sdxl.compose([("a red star", left), ("a blue cube", 1 - left)], "a field", seed=1, **RUN)
    assert torch.isfinite(out.latents).all() and torch.equal(sdxl.run(out.recipe).latents, out.latents)
