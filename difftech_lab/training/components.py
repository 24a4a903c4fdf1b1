"""The tiny Stable Diffusion's components: tokenizer vocabulary, text encoder, VAE and UNet configurations."""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import AutoencoderKL, EulerDiscreteScheduler
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from difftech_lab import scenes

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_TOKENS = 77  # Stable Diffusion's context length, so prompt tools that chunk by 75 tokens work unchanged

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=scenes.RESOLUTION,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64), layers_per_block=1, norm_num_groups=8,
)
TEXT_CONFIG = dict(
    hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4,
    max_position_embeddings=MAX_TOKENS, projection_dim=128, hidden_act="quick_gelu",
)
_UNET_COMMON = dict(sample_size=scenes.RESOLUTION // 4, in_channels=4, out_channels=4, layers_per_block=1,
                    cross_attention_dim=TEXT_CONFIG["hidden_size"], attention_head_dim=4, norm_num_groups=32)
# Self- and cross-attention at 8×8, 4×4 and 2×2. At 2×2 every cell touches two borders, so zero padding tells
# the convolutions where they are: absolute position ("on the left") is known without extra input channels.
UNET_ARCHITECTURES = {
    "four-level": dict(
        _UNET_COMMON, block_out_channels=(32, 64, 96, 96),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
    "three-level": dict(
        _UNET_COMMON, block_out_channels=(64, 96, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
}
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="v_prediction", timestep_spacing="trailing", steps_offset=1,
)


def grammar_words() -> list[str]:
    """Every word the canonical caption grammar uses, each of which gets one token (the first model's vocabulary)."""
    words = {"a", "and", "on", "the", "at", "in", "background", *scenes.COLOURS, *scenes.BACKGROUNDS,
             *scenes.SHAPES, *scenes.SIZES}
    words |= {w for p in scenes.POSITIONS for w in p.split()}
    return sorted(words)


def free_phrasing_words() -> list[str]:
    """The words free phrasing adds; they get tokens after the grammar's, so the grammar's token ids never move."""
    spellings = {w for options in scenes.SPELLINGS.values() for w in options}
    return sorted((spellings | {"an", scenes.GENERIC_NOUN}) - set(grammar_words()))


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, so that any text has a byte-level tokenization."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, n = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + n))
            n += 1
    return chars


def _merge_chain(word: str) -> list[str]:
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    return [f"{''.join(pieces[:i])} {pieces[i]}" for i in range(1, len(pieces))]


def _bpe_pieces(word: str, merges: list[str]) -> list[str]:
    """Apply ranked BPE merges to one word (the same rule the tokenizers library follows)."""
    rank = {m: i for i, m in enumerate(merges)}
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(rank.get(f"{a} {b}", 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        best, i = min(pairs)
        if best == 1 << 30:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def tokenizer_files(words: list[str], extra: list[str] = ()) -> tuple[dict[str, int], list[str]]:
    """CLIP BPE vocabulary and merges: byte fallbacks plus a merge chain that makes each grammar word one token.

    ``extra`` words are appended after the special tokens, each by merging, left to right, the pieces the earlier
    merges leave it in: the ids and merges of ``words`` stay exactly those of a vocabulary built without them.
    """
    order = sorted(words, key=len, reverse=True)
    for _ in range(len(order)):  # a word whose chain another word's merges interrupt moves to the front
        merges = list(dict.fromkeys(m for w in order for m in _merge_chain(w)))
        broken = [w for w in order if len(_bpe_pieces(w, merges)) != 1]
        if not broken:
            break
        order = broken + [w for w in order if w not in broken]
    else:
        raise RuntimeError(f"no merge order makes {broken} single tokens")
    alphabet = _byte_alphabet()
    pieces = [m.replace(" ", "") for m in merges]
    tokens = list(dict.fromkeys(alphabet + [c + "</w>" for c in alphabet] + pieces)) + [BOS, EOS]
    for word in extra:
        parts = _bpe_pieces(word, merges)
        while len(parts) > 1:
            merges.append(f"{parts[0]} {parts[1]}")
            parts[:2] = [parts[0] + parts[1]]
            if parts[0] not in tokens:
                tokens.append(parts[0])
    broken = [w for w in [*words, *extra] if len(_bpe_pieces(w, merges)) != 1]
    if broken:
        raise RuntimeError(f"extra words {broken} are not single tokens")
    return {t: i for i, t in enumerate(tokens)}, merges


def write_tokenizer(folder: Path, free_phrasing: bool = True) -> CLIPTokenizer:
    """Write and load the tokenizer whose vocabulary covers the grammar (and free phrasing) one token per word;
    ``free_phrasing=False`` writes the first release's vocabulary."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tokenizer_files(grammar_words(), free_phrasing_words() if free_phrasing else [])
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=MAX_TOKENS)
    tok.save_pretrained(folder)
    return CLIPTokenizer.from_pretrained(folder)


def folder_of(path) -> Path:
    """A component folder: ``path`` itself when it holds a config (e.g. a release's ``vae/``), else a run's ``model/``."""
    path = Path(path)
    return path if (path / "config.json").exists() else path / "model"


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    cfg = CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **TEXT_CONFIG)
    return CLIPTextModel(cfg)


def build_vae() -> AutoencoderKL:
    vae = AutoencoderKL(**VAE_CONFIG)
    # A near-deterministic posterior at the start; otherwise sampling noise swamps the tiny decoder's signal.
    vae.quant_conv.bias.data[VAE_CONFIG["latent_channels"]:] = -8.0
    return vae


def build_scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(**SCHEDULER_CONFIG)
