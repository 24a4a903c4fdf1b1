"""load_model: one entry for every model spec, dispatched to the loader of its form, or refused with the forms."""

import pytest
import torch
from safetensors.torch import load_file

from difftech_lab import InvalidArgumentError, ModelLoadError, UnsafeCheckpointError
from difftech_lab.models import loading
from difftech_lab.models.export import save_single_file
from difftech_lab.models.loading import BUNDLED_MODEL, load_model
from difftech_lab.models.parameterization import VDiscrete
from difftech_lab.models.tiny import tiny_model


@pytest.fixture(scope="module")
def sd15_file(tiny_folders, tmp_path_factory):
    return save_single_file(tiny_folders["sd15"], tmp_path_factory.mktemp("load-model") / "tiny-sd15.safetensors")


def _same_unet(a, b):
    sa, sb = a.unet.state_dict(), b.unet.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_none_is_the_bundled_model():
    bundle = load_model(device="cpu")
    assert bundle.source == str(BUNDLED_MODEL) and bundle.device == torch.device("cpu")


def test_a_folder_as_path_or_str(tiny_folders):
    by_path = load_model(tiny_folders["sd2"], device="cpu")
    by_str = load_model(str(tiny_folders["sd2"]), device="cpu", dtype=torch.float32)
    assert by_path.source == by_str.source == str(tiny_folders["sd2"])
    assert isinstance(by_path.model_sampling, VDiscrete) and _same_unet(by_path, by_str)


def test_a_safetensors_file_loads_as_a_single_file(tiny_folders, sd15_file):
    bundle = load_model(str(sd15_file), device="cpu", config=tiny_folders["sd15"])
    assert bundle.source == str(sd15_file)
    assert _same_unet(bundle, load_model(tiny_folders["sd15"], device="cpu"))


def test_a_pickle_needs_allow_pickle(tiny_folders, sd15_file, tmp_path):
    ckpt = tmp_path / "tiny-sd15.ckpt"
    torch.save({"state_dict": load_file(str(sd15_file))}, ckpt)
    with pytest.raises(UnsafeCheckpointError, match="allow_pickle=True"):
        load_model(ckpt, config=tiny_folders["sd15"])
    assert load_model(ckpt, device="cpu", config=tiny_folders["sd15"], allow_pickle=True).source == str(ckpt)


def test_allow_pickle_is_moot_for_a_folder(tiny_folders):
    assert load_model(tiny_folders["sd15"], device="cpu", allow_pickle=True).source == str(tiny_folders["sd15"])


def test_a_hub_id_goes_to_the_hub_loader_with_its_options(monkeypatch):
    calls = []
    monkeypatch.setattr(loading, "load_pretrained", lambda *args, **kwargs: calls.append((args, kwargs)) or "bundle")
    assert load_model("owner/model", variant="fp16", revision="main") == "bundle"
    assert calls == [(("owner/model", "auto", "auto"), {"variant": "fp16", "revision": "main"})]


def test_an_unreachable_hub_id_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="no local folder"):
        load_model("difftech-no-such-owner/no-such-model")


@pytest.mark.parametrize("spec", ["/no/such/folder", "no-such-file.safetensors", "not a model"])
def test_what_is_neither_local_nor_a_hub_id_is_refused_with_the_forms(spec):
    with pytest.raises(ModelLoadError, match="hub id") as err:
        load_model(spec)
    assert repr(spec) in str(err.value) and "single-file checkpoint" in str(err.value)


def test_a_missing_path_object_is_never_taken_for_a_hub_id(tmp_path):
    with pytest.raises(ModelLoadError, match="no existing folder or file"):
        load_model(tmp_path / "model")


@pytest.mark.parametrize("spec", [42, "", "  "])
def test_a_spec_of_no_accepted_form_is_refused(spec):
    with pytest.raises(InvalidArgumentError, match="None or 'tiny-shapes' \\(the bundled model\\)"):
        load_model(spec)


def test_a_file_that_is_no_checkpoint_points_to_its_folder(tiny_folders):
    with pytest.raises(ModelLoadError, match="give its folder"):
        load_model(tiny_folders["sd15"] / "model_index.json")


@pytest.mark.parametrize("spec, options, message", [
    ("sd15", {"config": "x"}, "config='x' applies to single-file checkpoints only"),
    ("sd15", {"revision": "main"}, "revision='main' applies to hub ids only"),
    ("file", {"variant": "fp16"}, "variant='fp16' applies to folders and hub ids only"),
])
def test_options_that_do_not_apply_to_the_form_are_refused(tiny_folders, sd15_file, spec, options, message):
    with pytest.raises(InvalidArgumentError, match=message):
        load_model(sd15_file if spec == "file" else tiny_folders[spec], **options)


def test_tiny_model_is_a_loaded_bundle():
    bundle = tiny_model("sd2", device="cpu")
    assert bundle.name == "tiny-sd2" and isinstance(bundle.model_sampling, VDiscrete)
    assert load_model(bundle.source, device="cpu").source == bundle.source
