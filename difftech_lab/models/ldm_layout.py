"""The original LDM single-file layout (what A1111 and ComfyUI load) as a mapping from diffusers names.

The key mapping is the inverse of diffusers' ``loaders/single_file_utils.py`` converters (SD 1.x/2.x, SDXL):
UNet under ``model.diffusion_model.``, VAE under ``first_stage_model.``, OpenAI CLIP under
``…transformer.text_model.``, OpenCLIP (SD 2 and SDXL's second encoder) under ``….model.`` with fused q/k/v.
Writing a checkpoint and checking one against an architecture both read it.
"""

from __future__ import annotations

import re

import torch

from ..errors import InvalidArgumentError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SD2_OPEN_CLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

# Names inside one residual block: diffusers ResnetBlock2D -> LDM ResBlock (UNet) / ResnetBlock (VAE).
UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
            "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
VAE_TOP = {"conv_norm_out": "norm_out"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
OPEN_CLIP_LAYER = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
                   "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
OPEN_CLIP_TOP = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
                 "text_model.embeddings.position_embedding.weight": "positional_embedding",
                 "text_model.final_layer_norm.weight": "ln_final.weight",
                 "text_model.final_layer_norm.bias": "ln_final.bias"}


def _unsupported(part: str, key: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{part} weight {key!r} has no place in the LDM single-file layout; only SD 1.x, "
                                "SD 2.x and SDXL UNet/VAE/CLIP architectures export (save_pretrained keeps the rest)")


def _rename(name: str, table: dict) -> str:
    """``name`` with its leading module path renamed by ``table`` (the longest matching entry wins)."""
    for old in sorted(table, key=len, reverse=True):
        if name == old or name.startswith(old + "."):
            return table[old] + name[len(old):]
    return name


def unet_to_ldm(state: dict, layers_per_block) -> dict:
    """diffusers UNet2DConditionModel keys -> LDM ``openaimodel.UNetModel`` keys (values untouched).

    LDM numbers its blocks flat: input block 0 is conv_in, then ``layers_per_block`` (resnet, attention) pairs and
    one downsampler per level; each output level has one layer more and its upsampler rides on the last layer.
    """
    if not isinstance(layers_per_block, int):
        raise InvalidArgumentError(f"UNet layers_per_block={layers_per_block!r} differs per level; the LDM layout "
                                   "needs one int")
    n = layers_per_block + 1
    up_attention = {int(m[1]) for k in state if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out = {}
    for key, value in state.items():
        if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            i = 1 + int(m[1]) * n + int(m[3])
            rest = _rename(m[4], UNET_RESNET) if m[2] == "resnets" else m[4]
            new = f"input_blocks.{i}.{0 if m[2] == 'resnets' else 1}.{rest}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{1 + int(m[1]) * n + layers_per_block}.0.op.{m[2]}"
        elif m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_rename(m[2], UNET_RESNET)}"
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            i = int(m[1]) * n + int(m[3])
            rest = _rename(m[4], UNET_RESNET) if m[2] == "resnets" else m[4]
            new = f"output_blocks.{i}.{0 if m[2] == 'resnets' else 1}.{rest}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            slot = 2 if int(m[1]) in up_attention else 1
            new = f"output_blocks.{int(m[1]) * n + layers_per_block}.{slot}.conv.{m[2]}"
        elif (new := _rename(key, UNET_TOP)) == key:
            raise _unsupported("UNet", key)
        out[new] = value
    return out


def vae_to_ldm(state: dict, num_up_blocks: int) -> dict:
    """diffusers AutoencoderKL keys -> LDM ``AutoencoderKL`` keys; mid-block attention becomes 1×1 convs.

    LDM's decoder counts its levels from the bottom up (``up.0`` is the last, full-resolution level).
    """
    out = {}
    for key, value in state.items():
        if m := re.fullmatch(
                r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.+)", key):
            level = int(m[3]) if m[2] == "down" else num_up_blocks - 1 - int(m[3])
            if m[4] == "resnets":
                new = f"{m[1]}.{m[2]}.{level}.block.{m[5]}.{_rename(m[6], {'conv_shortcut': 'nin_shortcut'})}"
            else:
                new = f"{m[1]}.{m[2]}.{level}.{m[2]}sample.{m[6]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{_rename(m[3], {'conv_shortcut': 'nin_shortcut'})}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            new = f"{m[1]}.mid.attn_1.{_rename(m[2], VAE_ATTENTION)}"
            if value.ndim == 2:  # LDM's AttnBlock projects with 1×1 convolutions
                value = value[:, :, None, None]
        elif m := re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out|conv_norm_out)\.(weight|bias)", key):
            new = f"{m[1]}.{_rename(m[2], VAE_TOP)}.{m[3]}"
        elif key.split(".")[0] in ("quant_conv", "post_quant_conv"):
            new = key
        else:
            raise _unsupported("VAE", key)
        out[new] = value
    return out


def _with_text_model(state: dict) -> dict:
    """transformers ≥ 5.6 flattens CLIPTextModel (no ``text_model.`` level); the LDM layout keeps that level."""
    return {k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k: v for k, v in state.items()}


def clip_to_ldm(state: dict) -> dict:
    """OpenAI CLIP text model keys in the layout of ``FrozenCLIPEmbedder.transformer`` (the HF model itself)."""
    state = _with_text_model(state)
    if extra := [k for k in state if not k.startswith("text_model.")]:
        raise _unsupported("CLIP text encoder", extra[0])
    return state


def open_clip_to_ldm(state: dict) -> dict:
    """HF CLIP text model -> OpenCLIP ``model.*`` keys: q/k/v fused into ``in_proj``, the projection transposed."""
    state = _with_text_model(state)
    out = {}
    for key, value in state.items():
        if key in OPEN_CLIP_TOP:
            out[OPEN_CLIP_TOP[key]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.T  # OpenCLIP computes x @ P, HF computes P x
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            if m[2] == "q":
                parts = [state[key.replace(".q_proj.", f".{c}_proj.")] for c in "qkv"]
                out[f"transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}"] = torch.cat(parts)
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)", key):
            if (rest := _rename(m[2], OPEN_CLIP_LAYER)) == m[2]:
                raise _unsupported("OpenCLIP text encoder", key)
            out[f"transformer.resblocks.{m[1]}.{rest}"] = value
        else:
            raise _unsupported("OpenCLIP text encoder", key)
    return out


def _prefixed(prefix: str, state: dict) -> dict:
    return {prefix + k: v for k, v in state.items()}


def ldm_state_dict(unet, vae, text_encoders) -> dict:
    """The whole model in the LDM single-file layout (tensors share storage with the modules where they can).

    One text encoder with a linear-projection UNet is SD 2 (OpenCLIP), without it SD 1.x (OpenAI CLIP);
    two text encoders are SDXL (CLIP-L, then OpenCLIP bigG).
    """
    state = _prefixed(UNET_PREFIX, unet_to_ldm(unet.state_dict(), unet.config.layers_per_block))
    state.update(_prefixed(VAE_PREFIX, vae_to_ldm(vae.state_dict(), len(vae.config.up_block_types))))
    if len(text_encoders) == 2:
        state.update(_prefixed(SDXL_CLIP_PREFIX, clip_to_ldm(text_encoders[0].state_dict())))
        state.update(_prefixed(SDXL_OPEN_CLIP_PREFIX, open_clip_to_ldm(text_encoders[1].state_dict())))
    elif unet.config.use_linear_projection:
        state.update(_prefixed(SD2_OPEN_CLIP_PREFIX, open_clip_to_ldm(text_encoders[0].state_dict())))
    else:
        state.update(_prefixed(SD1_CLIP_PREFIX, clip_to_ldm(text_encoders[0].state_dict())))
    return state
