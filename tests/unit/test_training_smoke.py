"""Every training stage runs two steps on a few images, the loss falls, and the export loads in diffusers."""

import json

import numpy as np
import pytest
import torch

from difftech_lab.training.__main__ import main

pytestmark = pytest.mark.slow  # ~15 s on 2 idle cores: four tiny trainings, an export and a load


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    common = ["--runs", str(root), "--steps", "2", "--log-every", "1", "--seed", "3"]
    main(["vae", *common, "--batch", "2"])
    main(["text", *common, "--batch", "4"])
    main(["unet", *common, "--batch", "4", "--lr", "1e-3", "pool=4", "warmup=0", "fixed-batch=1",
          f"vae={root}/vae"])
    return root


def _losses(run):
    return [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]


def test_two_steps_on_one_batch_lower_the_unet_loss(runs):
    first, second = _losses(runs / "unet")
    assert second < first


def test_stages_log_and_checkpoint(runs):
    for stage in ("vae", "text", "unet"):
        assert (runs / stage / "checkpoint.pt").exists()
        assert len(_losses(runs / stage)) == 2
    commands = [json.loads(line)["argv"][1] for line in (runs / "commands.jsonl").read_text().splitlines()]
    assert commands == ["vae", "text", "unet"]


def test_a_resumed_run_continues_from_its_checkpoint(runs):
    main(["unet", "--runs", str(runs), "--steps", "3", "--log-every", "1", "--batch", "4", "pool=4",
          f"vae={runs}/vae"])
    steps = [json.loads(line)["step"] for line in (runs / "unet" / "log.jsonl").read_text().splitlines()]
    assert steps[-2:] == [3, 3]  # one more step logged, then the save


def test_export_writes_a_folder_diffusers_loads_offline(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "model"
    main(["export", "--runs", str(runs), "--out", str(out), "vae=vae"])
    assert (out / "README.md").exists() and list(out.rglob("*.safetensors"))
    pipe = StableDiffusionPipeline.from_pretrained(out)
    assert pipe.safety_checker is None and pipe.vae.config.scaling_factor > 0
    assert 2 ** (len(pipe.vae.config.block_out_channels) - 1) == 4
    image = pipe("a big red circle on the left on a white background", height=64, width=64, num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
