"""The difftech-lab command: generate writes a PNG with its recipe, info reports, errors are one clear line."""

import json
import os
import platform
import subprocess
import sys

from difftech_lab import read_recipe
from difftech_lab.cli import main


def test_generate_writes_png_with_recipe(tiny_folders, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(["generate", "a red circle", "-o", str(out), "--model", str(tiny_folders["sd15"]), "--steps", "2",
                 "--width", "32", "--height", "32", "--seed", "4", "--sampler", "heun"])
    assert code == 0
    recipe = read_recipe(out)
    settings = recipe.settings
    assert (recipe.params["prompt"], settings.steps, settings.seed, settings.sampler) == ("a red circle", 2, 4, "heun")
    assert str(out) in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_code_2(tiny_folders, tmp_path, capsys):
    code = main(["generate", "x", "-o", str(tmp_path / "x.png"), "--model", str(tiny_folders["sd15"]),
                 "--sampler", "nope"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("difftech-lab: unknown sampler 'nope'") and "Traceback" not in err


def test_model_option_dispatches_a_checkpoint_file_and_refuses_a_pickle(tmp_path, capsys):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not read: refused before loading")
    assert main(["generate", "x", "-o", str(tmp_path / "x.png"), "--model", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("difftech-lab: model.ckpt is a pickled checkpoint") and "Traceback" not in err


def test_info_reports_versions_and_model(tiny_folders):
    proc = subprocess.run([sys.executable, "-m", "difftech_lab", "info", "--model", str(tiny_folders["sdxl"])],
                          capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    info = json.loads(proc.stdout)
    # the child runs in this interpreter's environment, so this process is the oracle for what it reports
    import diffusers
    import torch
    import transformers

    import difftech_lab

    versions = {k: info[k] for k in ("difftech_lab", "python", "torch", "diffusers", "transformers")}
    assert versions == {"difftech_lab": difftech_lab.__version__, "python": platform.python_version(),
                        "torch": torch.__version__, "diffusers": diffusers.__version__,
                        "transformers": transformers.__version__}
    assert info["DIFFTECH_MODEL"] == os.environ.get("DIFFTECH_MODEL", "")
    assert info["model"]["parameterisation"] == "EpsDiscrete"
    assert info["model"]["source"] == str(tiny_folders["sdxl"]) and info["model"]["name"] == "sdxl"
    # the device is checked on its own: CUDA's presence must not stand in for the fields above
    cuda = torch.cuda.is_available()
    assert info["cuda"] is cuda
    assert info["device"] == (torch.cuda.get_device_name(0) if cuda else "cpu")


def test_eval_passes_its_options_through(monkeypatch):
    import difftech_lab.training.evaluate as evaluate

    seen = []
    monkeypatch.setattr(evaluate, "main", lambda argv: seen.append(argv) or {})
    assert main(["eval", "--images", "5", "--guidance", "2"]) == 0
    assert seen == [["--images", "5", "--guidance", "2"]]
