"""GLIGEN grounding weights beside a base model: a gated UNet with its gates shut is its base, bit for bit; the
training stage runs, exports a grounding folder that loads as a model of its own (identity covering the base);
the shipped grounding of the bundled model loads by name and grounds; broken folders are refused naming the fix."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from difftech_lab.errors import ModelLoadError
from difftech_lab.models import load_model
from difftech_lab.models.grounding import (GROUNDING_FILE, WEIGHTS_FILE, grounded_unet, grounding_state,
                                           has_grounding)
from difftech_lab.training.checkpoints import RunDir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_gated_copy_with_shut_gates_computes_what_its_base_does(tiny_folders):
    from diffusers import UNet2DConditionModel

    base = UNet2DConditionModel.from_pretrained(tiny_folders["sd15"] / "unet").eval()
    unet = grounded_unet(base).eval()
    assert has_grounding(unet) and not has_grounding(base)
    torch.manual_seed(0)
    x, ctx = torch.randn(2, 4, 8, 8), torch.randn(2, 77, base.config.cross_attention_dim)
    gligen = {"boxes": torch.rand(2, 30, 4), "positive_embeddings": torch.randn(2, 30, base.config.cross_attention_dim),
              "masks": torch.ones(2, 30)}
    with torch.no_grad():
        plain = base(x, 10, ctx).sample
        gated = unet(x, 10, ctx, cross_attention_kwargs={"gligen": gligen}).sample
        assert torch.equal(plain, gated)
        for name, p in unet.named_parameters():  # open the gates: the grounding now changes the output
            if name.endswith("alpha_attn"):
                p.fill_(1.0)
        assert not torch.equal(plain, unet(x, 10, ctx, cross_attention_kwargs={"gligen": gligen}).sample)


@pytest.mark.slow  # three short trainings on the bundled model's UNet, their exports and a load (~5 s)
def test_the_grounding_stage_trains_the_new_weights_only_and_exports_a_loadable_folder(tmp_path):
    from difftech_lab import Session
    from difftech_lab.models.loading import BUNDLED_MODEL
    from difftech_lab.training.__main__ import main

    common = ["--runs", str(tmp_path), "--log-every", "1", "--threads", "1"]
    main(["gligen", *common, "--steps", "2", "--batch", "2", f"base={BUNDLED_MODEL}", "pool=4"])
    records = [json.loads(line) for line in (tmp_path / "gligen" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2] and records[-2]["gate"] > 0
    out = tmp_path / "grounded"
    main(["export-gligen", *common, "--out", str(out), "scheduled_sampling=0.5"])
    meta = json.loads((out / GROUNDING_FILE).read_text())
    assert meta["steps"] == 2 and meta["defaults"] == {"scheduled_sampling": 0.5}
    card = (out / "README.md").read_text()
    assert "Optimiser steps: 2" in card and "export-gligen" in card and f"--runs {tmp_path}" in card
    model = load_model(out, device="cpu")
    base = load_model(None, device="cpu")
    assert has_grounding(model.unet) and model.identity not in ("", base.identity)
    for name, tensor in model.unet.state_dict().items():  # the base weights are the release's, untouched
        if name in base.unet.state_dict():
            assert torch.equal(tensor, base.unet.state_dict()[name]), name
    session = Session(model, progress=False)
    result = session.gligen("a red circle", [("a red circle", (0.1, 0.1, 0.4, 0.4))], seed=0, steps=4)
    assert result.recipe.params["method"] == "gligen" and result.recipe.params["scheduled_sampling"] == 0.5

    # a new run continues the exported weights: its steps count on from the folder's, its card lists both runs
    # (the folder's weights are shifted first, so that continuing them differs from a fresh start at this seed)
    exported = {k: (v.float() + 0.25).half() for k, v in load_file(out / WEIGHTS_FILE).items()}
    save_file(exported, out / WEIGHTS_FILE)
    more = tmp_path / "gligen-more"
    main(["gligen", *common, "--run-dir", str(more), "--steps", "3", "--batch", "2", f"base={BUNDLED_MODEL}",
          "pool=4", f"init={out}"])
    assert [r["step"] for r in RunDir(more).records() if "loss" in r] == [3]
    first = torch.load(more / "checkpoint.pt", weights_only=True)["ema"]
    assert set(first) == set(exported)
    assert max(float((first[k] - exported[k].float()).abs().max()) for k in first) < 1e-2  # one step of EMA
    out2 = tmp_path / "grounded-more"
    main(["export-gligen", *common, "--run-dir", str(more), "--out", str(out2)])
    card = (out2 / "README.md").read_text()
    assert "Optimiser steps: 3" in card and f"--run-dir {more}" in card
    assert sum(line.startswith("python -m difftech_lab.training gligen") for line in card.splitlines()) == 2
    assert "earlier releases of the base" not in card

    # continued onto a fine-tuned release of the base: the folder extends the new base, the card names the old
    release = tmp_path / "base-v2"
    shutil.copytree(BUNDLED_MODEL, release)
    unet_file = next((release / "unet").glob("*.safetensors"))
    weights = load_file(unet_file)
    name = next(k for k in weights if k.endswith("conv_in.bias"))
    weights[name] = weights[name] + 0.01
    save_file(weights, unet_file)
    adapted = tmp_path / "gligen-adapted"
    main(["gligen", *common, "--run-dir", str(adapted), "--steps", "4", "--batch", "2", f"base={release}",
          "pool=4", f"init={out2}"])
    out3 = tmp_path / "grounded-adapted"
    main(["export-gligen", *common, "--run-dir", str(adapted), "--out", str(out3)])
    meta3, old_base = json.loads((out3 / GROUNDING_FILE).read_text()), json.loads((out2 / GROUNDING_FILE).read_text())
    assert meta3["base_identity"] != old_base["base_identity"] and (out3 / meta3["base"]).resolve() == release.resolve()
    assert f"earlier releases of the base (weights `{old_base['base_identity']}`)" in (out3 / "README.md").read_text()


def test_broken_grounding_folders_are_refused_naming_the_fix(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / GROUNDING_FILE).write_text(json.dumps({"base": "../nowhere"}))
    with pytest.raises(ModelLoadError, match="install that model beside it"):
        load_model(folder)
    from difftech_lab.models.loading import BUNDLED_MODEL

    (folder / GROUNDING_FILE).write_text(json.dumps({"base": str(BUNDLED_MODEL)}))
    with pytest.raises(ModelLoadError, match=WEIGHTS_FILE):
        load_model(folder)
    from safetensors.torch import save_file

    save_file({"position_net.null_position_feature": torch.zeros(64)}, folder / WEIGHTS_FILE)
    with pytest.raises(ModelLoadError, match="does not fit its base UNet"):
        load_model(folder)


grounded_release = pytest.mark.skipif(
    not (__import__("difftech_lab.models.loading", fromlist=["x"]).BUNDLED_GROUNDED / WEIGHTS_FILE).is_file(),
    reason="the grounded bundled model is not installed")


@grounded_release
def test_the_shipped_grounding_loads_by_name_and_unscheduled_is_the_base_model():
    from difftech_lab import Session

    grounded, base = Session("tiny-shapes-gligen", progress=False), Session(progress=False)
    assert has_grounding(grounded.model.unet) and grounded.model.version == base.model.version
    gates = [float(v.abs()) for k, v in grounding_state(grounded.model.unet).items() if k.endswith("alpha_attn")]
    assert min(gates) > 0  # trained: every gate open
    boxes = [("a red circle", (0.05, 0.05, 0.4, 0.4)), ("a blue star", (0.6, 0.6, 0.95, 0.95))]
    prompt = "a red circle and a blue star on a white background"
    off = grounded.gligen(prompt, boxes, scheduled_sampling=0.0, seed=3, steps=6)
    assert torch.equal(off.latents, base.generate(prompt, seed=3, steps=6).latents)
    on = grounded.gligen(prompt, boxes, seed=3, steps=6)
    assert on.recipe.params["method"] == "gligen" and not torch.equal(on.latents, off.latents)
    assert torch.equal(grounded.run(on.recipe).latents, on.latents)


def test_grounding_trains_half_its_batch_at_the_noisier_timesteps():
    from difftech_lab.training.train_gligen import layout_timesteps

    t = layout_timesteps(1000, 4000, torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() < 1000
    assert (t[:2000] >= 500).all() and 0.4 < (t[2000:] >= 500).float().mean() < 0.6


def test_the_card_counts_only_the_sittings_that_made_the_exported_weights(tmp_path):
    from difftech_lab.training.train_gligen import write_card

    run, out = tmp_path / "gligen", tmp_path / "grounded"
    run.mkdir()
    out.mkdir()
    # two sittings reached the exported step; a third went on past it (weights the folder does not hold)
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s, "event": "saved", "time": t}) + "\n"
                                           for s, t in ((100, 600.0), (200, 1200.0), (300, 3000.0))))
    (out / GROUNDING_FILE).write_text(json.dumps({"base": "../base", "base_identity": "abc", "steps": 200,
                                                  "run": str(run)}))
    write_card(out, tmp_path)
    assert "wall time 30 min" in (out / "README.md").read_text()
