"""Single-file checkpoints: export to the LDM/A1111 layout, load back offline, bit for bit."""

import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from difftech_lab import InvalidArgumentError, ModelLoadError, Session
from difftech_lab.models.export import save_single_file
from difftech_lab.models.ldm_layout import open_clip_to_ldm, unet_to_ldm, vae_to_ldm

FAST = dict(steps=3, width=32, height=32, progress=False)


@pytest.fixture(scope="module")
def sd15_file(tiny_folders, tmp_path_factory):
    return save_single_file(tiny_folders["sd15"], tmp_path_factory.mktemp("single-file") / "tiny-sd15.safetensors")


@pytest.fixture(scope="module")
def sd15_reference(tiny_folders):
    return Session.from_pretrained(tiny_folders["sd15"], progress=False)


def _parts(session):
    return [session.model.unet, session.model.vae, *session.model.text_encoders]


def _assert_same_weights(loaded, reference):
    for a, b in zip(_parts(loaded), _parts(reference), strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        different = [k for k in sa if sa[k].dtype != sb[k].dtype or not torch.equal(sa[k], sb[k])]
        assert not different, f"{type(a).__name__}: {different[:5]}"


def test_export_writes_the_ldm_layout(sd15_file, sd15_reference):
    state = load_file(str(sd15_file))
    # Key names and shapes as the original CompVis/A1111 code defines them.
    assert state["model.diffusion_model.input_blocks.0.0.weight"].shape == (32, 4, 3, 3)
    assert state["model.diffusion_model.out.2.weight"].shape == (4, 32, 3, 3)
    assert state["model.diffusion_model.input_blocks.1.0.in_layers.2.weight"].shape == (32, 32, 3, 3)
    assert state["model.diffusion_model.input_blocks.2.0.op.weight"].shape == (32, 32, 3, 3)
    assert "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in state
    assert "model.diffusion_model.middle_block.1.proj_in.weight" in state
    # output block 1 takes 64 channels from below plus the 32 skipped from input block 2
    assert state["model.diffusion_model.output_blocks.1.0.skip_connection.weight"].shape == (64, 96, 1, 1)
    assert "model.diffusion_model.output_blocks.1.1.conv.weight" in state  # upsampler after a plain block
    assert state["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (32, 32, 1, 1)
    assert state["first_stage_model.decoder.up.1.upsample.conv.weight"].shape == (32, 32, 3, 3)
    assert "first_stage_model.decoder.norm_out.weight" in state
    assert state["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"].shape == (514, 32)
    model = sd15_reference.model
    assert len(state) == sum(len(m.state_dict()) for m in (model.unet, model.vae, *model.text_encoders))


@pytest.mark.parametrize("name, config", [
    ("sd15", dict(block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                  down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                  up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)),
    ("sdxl", dict(block_out_channels=(320, 640, 1280), cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                  transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
                  addition_embed_type="text_time", addition_time_embed_dim=256,
                  projection_class_embeddings_input_dim=2816)),
])
def test_full_size_unet_mapping_is_the_inverse_of_diffusers_converter(name, config):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES, convert_ldm_unet_checkpoint

    with torch.device("meta"):  # real SD 1.5 / SDXL shapes without allocating them
        unet = UNet2DConditionModel(layers_per_block=2, **config)
    state = unet.state_dict()
    ldm = {"model.diffusion_model." + k: v for k, v in unet_to_ldm(state, 2).items()}
    back = convert_ldm_unet_checkpoint(ldm, unet.config)
    assert back.keys() == state.keys() and all(back[k] is state[k] for k in state)
    if name == "sd15":  # keys by which diffusers recognises a real SD 1.x checkpoint
        assert CHECKPOINT_KEY_NAMES["v1"] in ldm and CHECKPOINT_KEY_NAMES["v2"] in ldm
        assert len(ldm) == 686  # the UNet tensor count of the released SD 1.5 checkpoint


def test_full_size_vae_and_open_clip_mappings_are_the_inverse_of_diffusers_converters():
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import (CHECKPOINT_KEY_NAMES, convert_ldm_vae_checkpoint,
                                                     convert_open_clip_checkpoint)
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    with torch.device("meta"):
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4)
        bigg = CLIPTextModelWithProjection(CLIPTextConfig(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
            projection_dim=1280, hidden_act="gelu"))
    state = vae.state_dict()
    ldm = {"first_stage_model." + k: v for k, v in vae_to_ldm(state, 4).items()}
    assert len(ldm) == 248 and ldm["first_stage_model.decoder.mid.attn_1.proj_out.weight"].shape == (512, 512, 1, 1)
    back = convert_ldm_vae_checkpoint(ldm, vae.config)
    assert back.keys() == state.keys() and all(back[k].shape == state[k].shape for k in state)

    state = bigg.state_dict()
    ldm = {"conditioner.embedders.1.model." + k: v for k, v in open_clip_to_ldm(state).items()}
    assert CHECKPOINT_KEY_NAMES["xl_base"] in ldm
    assert ldm["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"].shape == (3840, 1280)
    back = convert_open_clip_checkpoint(bigg, ldm, prefix="conditioner.embedders.1.model.")
    assert back.keys() == state.keys() and all(back[k].shape == state[k].shape for k in state)


def test_sd15_round_trip_offline_is_bit_for_bit(tiny_folders, sd15_file, sd15_reference):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    loaded = Session.from_single_file(sd15_file, config=tiny_folders["sd15"], progress=False)
    assert loaded.model.source == str(sd15_file)
    _assert_same_weights(loaded, sd15_reference)
    a = loaded.generate("a red circle", seed=3, **FAST)
    b = sd15_reference.generate("a red circle", seed=3, **FAST)
    assert torch.equal(a.latents, b.latents)


@pytest.mark.parametrize("kind", ["sd2", "sdxl"])
def test_sd2_and_sdxl_round_trip_offline_is_bit_for_bit(tiny_folders, tmp_path, kind):
    path = save_single_file(tiny_folders[kind], tmp_path / f"{kind}.safetensors")
    prefix = "conditioner.embedders.1.model." if kind == "sdxl" else "cond_stage_model.model."
    assert prefix + "transformer.resblocks.0.attn.in_proj_weight" in load_file(str(path))  # OpenCLIP layout
    loaded = Session.from_single_file(path, config=tiny_folders[kind], progress=False)
    _assert_same_weights(loaded, Session.from_pretrained(tiny_folders[kind], progress=False))


def test_weights_only_ckpt_of_the_same_state_dict_loads_with_allow_pickle(tiny_folders, sd15_file, sd15_reference,
                                                                          tmp_path):
    ckpt = tmp_path / "tiny-sd15.ckpt"
    torch.save({"state_dict": load_file(str(sd15_file)), "global_step": 7}, ckpt)
    loaded = Session.from_single_file(ckpt, config=tiny_folders["sd15"], allow_pickle=True, progress=False)
    _assert_same_weights(loaded, sd15_reference)


def test_fp16_export_halves_every_weight(tiny_folders, sd15_file, tmp_path):
    half = load_file(str(save_single_file(tiny_folders["sd15"], tmp_path / "half.safetensors", dtype=torch.float16)))
    full = load_file(str(sd15_file))
    assert half.keys() == full.keys()
    assert all(half[k].dtype == torch.float16 and torch.equal(half[k], full[k].half()) for k in full)


def test_export_refuses_a_non_safetensors_name(tiny_folders, tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"'model\.safetensors' instead of 'model\.ckpt'"):
        save_single_file(tiny_folders["sd15"], tmp_path / "model.ckpt")


def test_a_non_sd_safetensors_file_is_a_clear_model_load_error(tiny_folders, tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.alpha": torch.ones(1)}, str(path))
    with pytest.raises(ModelLoadError, match=r"lora\.safetensors is not a Stable Diffusion checkpoint"):
        Session.from_single_file(path, config=tiny_folders["sd15"])


def test_a_truncated_file_is_a_model_load_error(tiny_folders, sd15_file, tmp_path):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(sd15_file.read_bytes()[: sd15_file.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        Session.from_single_file(path, config=tiny_folders["sd15"])


def test_weights_the_config_needs_but_the_file_lacks_are_an_error_not_random(tiny_folders, sd15_file, tmp_path):
    state = {k: v for k, v in load_file(str(sd15_file)).items()
             if not k.startswith("model.diffusion_model.output_blocks.0.")}
    path = tmp_path / "partial.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelLoadError, match=r"partial\.safetensors lacks \d+ weight.*output_blocks\.0\."):
        Session.from_single_file(path, config=tiny_folders["sd15"])


def test_a_config_of_another_architecture_is_a_model_load_error(tiny_folders, sd15_file):
    with pytest.raises(ModelLoadError, match="same architecture"):
        Session.from_single_file(sd15_file, config=tiny_folders["sdxl"])


def test_without_config_offline_the_error_says_to_pass_one(sd15_file):
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 (set by conftest) so that nothing is fetched")
    with pytest.raises(ModelLoadError, match="config=<a local diffusers folder"):
        Session.from_single_file(sd15_file)
