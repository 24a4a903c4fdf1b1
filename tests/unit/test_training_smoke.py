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


def test_a_text_tower_continued_from_release_one_starts_as_it(tmp_path):
    """Version 2's text stage grows version 1's vocabulary: old token ids stay, each new word starts as the word it
    spells, and canonical captions get version 1's states exactly before any step."""
    from difftech_lab.training import components, train_text

    # A release with version 1's vocabulary (the grammar's words only) and a text tower of its size.
    v1 = tmp_path / "v1"
    old_tok = components.write_tokenizer(v1 / "tokenizer", free_phrasing=False)
    torch.manual_seed(0)
    old = components.build_text_encoder(old_tok).eval()
    old.save_pretrained(v1 / "text_encoder")

    tokenizer = components.write_tokenizer(tmp_path / "tokenizer")
    model = train_text._from_previous(components.build_text_encoder(tokenizer), tokenizer, str(v1)).eval()
    caption = "a big red circle on the left and a small gray star at the top on a white background"
    assert tokenizer(caption).input_ids == old_tok(caption).input_ids
    with torch.no_grad():
        assert torch.equal(model(tokenizer([caption], return_tensors="pt").input_ids).last_hidden_state,
                           old(old_tok([caption], return_tensors="pt").input_ids).last_hidden_state)
    table, ids = model.get_input_embeddings().weight, tokenizer.get_vocab()
    assert torch.equal(table[ids["grey</w>"]], table[ids["gray</w>"]])
    assert torch.equal(table[ids["large</w>"]], table[ids["big</w>"]])
    assert len(tokenizer("grey large little center middle an shape").input_ids) == 9  # one token each


def test_free_prompts_are_broken_down_by_what_they_leave_open():
    """On the dataset's truth every group is fully right; two objects for a one-object prompt are 'too many' and
    count under each attribute that prompt leaves open."""
    from difftech_lab import scenes
    from difftech_lab.metrics import score
    from difftech_lab.training.dataset import render
    from difftech_lab.training.evaluate import by_open_attribute

    red = scenes.ObjectSpec("big", "red", "circle", "left")
    blue = scenes.ObjectSpec("small", "blue", "square", "right")
    one, two = scenes.SceneSpec((red,), "black"), scenes.SceneSpec((red, blue), "black")
    images = [render(one).image, render(two).image, render(one).image]
    named = [scenes.SceneSpec((scenes.ObjectSpec(None, "red", "circle", None),), "black"),
             scenes.SceneSpec((scenes.ObjectSpec("big", "red", "circle", "left"),), None),
             one]
    groups = by_open_attribute([score(i, n) for i, n in zip(images, named)], named)
    assert list(groups) == ["none", "background", "position", "size"]
    assert groups["none"] == {"n": 1, "strict": 1.0, "too_many": 0.0, "too_few": 0.0}
    assert groups["size"] == groups["position"] == {"n": 1, "strict": 1.0, "too_many": 0.0, "too_few": 0.0}
    assert groups["background"] == {"n": 1, "strict": 0.0, "too_many": 1.0, "too_few": 0.0}
