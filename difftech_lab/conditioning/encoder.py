"""Weighted, chunked CLIP text encoding as AUTOMATIC1111's webui does it (``modules/sd_hijack_clip.py``).

A prompt is split into weighted fragments (``parse_prompt_attention``), tokenized into chunks of 75 tokens
(``BREAK`` starts a new chunk; a chunk that fills up moves the words after its last comma to the next one),
each chunk is framed as BOS + 75 tokens + EOS/padding = 77 tokens and encoded on its own, the emphasis is
applied to the hidden states, and the chunks are concatenated along the token axis.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict, namedtuple
from dataclasses import dataclass, field

import torch

from difftech_lab.conditioning.prompt_parser import parse_prompt, parse_prompt_attention
from difftech_lab.conditioning.types import CondTerm, Conditioning, Embedding
from difftech_lab.errors import (InvalidArgumentError, PromptLengthWarning, PromptSyntaxWarning, UnknownNameError,
                                 warn_user)

__all__ = ["CacheInfo", "PromptChunk", "PromptEncoder", "apply_emphasis", "build_chunks"]

CHUNK_LENGTH = 75  # prompt tokens per chunk; with BOS and EOS a chunk fills CLIP's 77 positions
EMPHASIS_MODES = ("original", "no_norm", "ignore", "none")

CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])


@dataclass
class PromptChunk:
    """Up to 75 prompt token ids and their emphasis weights."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def build_chunks(fragments: list[list], tokenizer, comma_padding_backtrack: int = 20) -> list[PromptChunk]:
    """A1111 ``tokenize_line``: weighted fragments to chunks of exactly ``CHUNK_LENGTH`` prompt tokens.

    Returned chunks hold at most ``CHUNK_LENGTH`` prompt tokens and their weights; ``_frame`` adds BOS, EOS
    and padding.
    """
    comma = tokenizer.get_vocab().get(",</w>")
    texts = [text for text, _ in fragments]
    tokenized = tokenizer(texts, truncation=False, add_special_tokens=False)["input_ids"]
    chunks, chunk, last_comma = [], PromptChunk(), -1

    def next_chunk() -> None:
        nonlocal chunk, last_comma
        chunks.append(chunk)
        chunk, last_comma = PromptChunk(), -1

    for tokens, (text, weight) in zip(tokenized, fragments):
        if text == "BREAK" and weight == -1:
            next_chunk()
            continue
        for token in tokens:
            if token == comma:
                last_comma = len(chunk.tokens)
            elif (comma_padding_backtrack and len(chunk.tokens) == CHUNK_LENGTH and last_comma != -1
                  and len(chunk.tokens) - last_comma <= comma_padding_backtrack):
                # keep the words after the last comma together by moving them to the next chunk
                moved = PromptChunk(chunk.tokens[last_comma + 1:], chunk.weights[last_comma + 1:])
                del chunk.tokens[last_comma + 1:], chunk.weights[last_comma + 1:]
                next_chunk()
                chunk = moved
            if len(chunk.tokens) == CHUNK_LENGTH:
                next_chunk()
            chunk.tokens.append(token)
            chunk.weights.append(weight)
    if chunk.tokens or not chunks:
        next_chunk()
    return chunks


def _frame(chunk: PromptChunk, tokenizer) -> tuple[list[int], list[float]]:
    """BOS + tokens + EOS, then the tokenizer's pad token to 77 (A1111 pads SD1 with EOS, OpenCLIP with 0)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    fill = CHUNK_LENGTH - len(chunk.tokens)
    tokens = [tokenizer.bos_token_id, *chunk.tokens, tokenizer.eos_token_id] + [pad] * fill
    return tokens, [1.0, *chunk.weights, 1.0] + [1.0] * fill


def apply_emphasis(z: torch.Tensor, weights: torch.Tensor, mode: str = "original") -> torch.Tensor:
    """A1111 emphasis: ``z *= w`` per token, then (``original``) ``z *= mean(z_orig) / mean(z_new)``."""
    if mode in ("ignore", "none") or bool((weights == 1).all()):
        return z  # unweighted text stays bit-identical to a plain encode, whatever its mean
    original_mean = z.mean()
    z = z * weights.reshape(*weights.shape, 1).to(z.dtype)
    new_mean = z.mean()
    if mode == "original" and new_mean != 0:  # a zero mean (e.g. fresh LayerNorm weights) has nothing to restore
        z = z * (original_mean / new_mean)
    return z


class PromptEncoder:
    """A1111 prompt encoding over one CLIP pair (SD1/SD2) or two (SDXL: CLIP-L and CLIP-G with projection).

    Args:
        tokenizer, text_encoder: the first ``CLIPTokenizer`` / ``CLIPTextModel`` pair.
        tokenizer_2, text_encoder_2: the SDXL second pair (``CLIPTextModelWithProjection``); giving them
            switches to SDXL conventions: penultimate hidden states without final layer norm from both,
            concatenated on the last dim, and ``pooled`` = the second encoder's ``text_embeds`` of chunk 1.
        clip_skip: 1 = last layer. SD1/SD2: ``k`` takes ``hidden_states[-k]`` and applies the final layer norm
            (A1111). SDXL: ``k`` takes ``hidden_states[-(k + 1)]`` (1 = diffusers' default, 2 = diffusers'
            ``clip_skip=1``).
        cache_size: how many encodings the LRU cache keeps (0 disables it).
        comma_padding_backtrack: A1111's setting of the same name; 0 disables moving words after a comma.
        trained_tokens: the longest caption (BOS and EOS included) the text encoder was trained on, where the
            model says (``ModelBundle.trained_tokens``); a chunk longer than that warns (``PromptLengthWarning``):
            position embeddings past it were never trained, and the words there are read poorly.
        emphasis: ``"original"`` (mean restored), ``"no_norm"``, ``"ignore"`` (weights parsed but unused) or
            ``"none"`` (brackets and BREAK are literal text), as A1111's Emphasis setting.
    """

    def __init__(self, tokenizer, text_encoder, tokenizer_2=None, text_encoder_2=None, *, clip_skip: int = 1,
                 cache_size: int = 64, comma_padding_backtrack: int = 20, emphasis: str = "original",
                 trained_tokens: int | None = None):
        if (tokenizer_2 is None) != (text_encoder_2 is None):
            raise InvalidArgumentError("tokenizer_2 and text_encoder_2 go together: give both (SDXL) or neither")
        if emphasis not in EMPHASIS_MODES:
            raise UnknownNameError("emphasis mode", emphasis, EMPHASIS_MODES)
        if cache_size < 0:
            raise InvalidArgumentError(f"cache_size={cache_size}: must be >= 0 (0 turns the cache off)")
        self.pairs = [(tokenizer, text_encoder)] + ([(tokenizer_2, text_encoder_2)] if tokenizer_2 is not None else [])
        self.is_sdxl = len(self.pairs) == 2
        self.clip_skip = self._check_clip_skip(clip_skip)
        self.cache_size, self.comma_padding_backtrack, self.emphasis = cache_size, comma_padding_backtrack, emphasis
        self.trained_tokens = trained_tokens
        self._cache: OrderedDict[tuple[str, int], Embedding] = OrderedDict()
        self._hits = self._misses = 0

    @classmethod
    def from_pipe(cls, pipe, **kwargs) -> "PromptEncoder":
        """From a diffusers pipeline's ``tokenizer``/``text_encoder`` (and ``_2`` ones where present)."""
        return cls(pipe.tokenizer, pipe.text_encoder, getattr(pipe, "tokenizer_2", None),
                   getattr(pipe, "text_encoder_2", None), **kwargs)

    def _check_clip_skip(self, clip_skip: int) -> int:
        deepest = min(encoder.config.num_hidden_layers for _, encoder in self.pairs)
        if not isinstance(clip_skip, int) or not 1 <= clip_skip <= deepest:
            raise InvalidArgumentError(f"clip_skip={clip_skip!r}: must be an int from 1 (last layer) to {deepest}")
        return clip_skip

    # ----------------------------------------------------------------------------------------------------
    def encode(self, text: str, clip_skip: int | None = None, strict: bool = False) -> Embedding:
        """One schedule-free text to ``Embedding(hidden [1, 77·k, D], pooled)``, through the LRU cache."""
        clip_skip = self.clip_skip if clip_skip is None else self._check_clip_skip(clip_skip)
        fragments = parse_prompt_attention(text, strict) if self.emphasis != "none" else [[text, 1.0]]
        key = (text, clip_skip)
        if key in self._cache:
            self._hits += 1
            self._cache.move_to_end(key)
            return _copy(self._cache[key])
        self._misses += 1
        embedding = self._encode_fragments(fragments, clip_skip)
        if self.cache_size:
            self._cache[key] = _copy(embedding)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return embedding

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._hits, self._misses, self.cache_size, len(self._cache))

    def cache_clear(self) -> None:
        self._cache.clear()
        self._hits = self._misses = 0

    @torch.no_grad()
    def _encode_fragments(self, fragments: list[list], clip_skip: int) -> Embedding:
        per_pair = [build_chunks(fragments, tokenizer, self.comma_padding_backtrack) for tokenizer, _ in self.pairs]
        self._check_length(per_pair[0], self.pairs[0][0])
        count = max(len(chunks) for chunks in per_pair)
        hidden, pooled = [], None
        for index, ((tokenizer, encoder), chunks) in enumerate(zip(self.pairs, per_pair)):
            chunks = chunks + [PromptChunk() for _ in range(count - len(chunks))]  # tokenizers may disagree
            zs = []
            for number, chunk in enumerate(chunks):
                z, chunk_pooled = self._encode_chunk(tokenizer, encoder, chunk, clip_skip)
                zs.append(z)
                if index == 1 and number == 0:
                    pooled = chunk_pooled
            hidden.append(torch.cat(zs, dim=1))
        return Embedding(hidden=torch.cat(hidden, dim=-1), pooled=pooled)

    def _check_length(self, chunks: list[PromptChunk], tokenizer) -> None:
        if self.trained_tokens is None:
            return
        room = self.trained_tokens - 2  # BOS and EOS frame each chunk
        for chunk in chunks:
            if len(chunk.tokens) > room:
                past = tokenizer.decode(chunk.tokens[room:]).strip()
                warn_user(f"a prompt part of {len(chunk.tokens) + 2} tokens is longer than the captions this model's "
                          f"text encoder was trained on (at most {self.trained_tokens}): the words past them "
                          f"({past!r}) are read poorly. Split the prompt with BREAK into parts of at most {room} "
                          "tokens, each one a scene of the kind the model knows", PromptLengthWarning)

    def _encode_chunk(self, tokenizer, encoder, chunk: PromptChunk, clip_skip: int):
        tokens, weights = _frame(chunk, tokenizer)
        ids = torch.tensor([tokens], device=encoder.device)
        out = encoder(ids, output_hidden_states=True)
        if self.is_sdxl:
            z = out.hidden_states[-(clip_skip + 1)]
        elif clip_skip == 1:
            z = out.last_hidden_state
        else:
            # transformers 5 flattens CLIPTextModel; the projection model still wraps a text_model
            z = getattr(encoder, "text_model", encoder).final_layer_norm(out.hidden_states[-clip_skip])
        z = apply_emphasis(z, torch.tensor([weights], device=z.device), self.emphasis)
        pooled = getattr(out, "text_embeds", None)
        return z, pooled if pooled is not None else out.pooler_output

    # ----------------------------------------------------------------------------------------------------
    def encode_term(self, schedule: list[tuple[int, str]], weight: float = 1.0,
                    clip_skip: int | None = None) -> CondTerm:
        """A ``[(until_step, text)]`` schedule (``PromptTerm.schedule``) to a ``CondTerm``."""
        embeddings = self._encode_quietly([text for _, text in schedule], clip_skip)
        return CondTerm([(until, embeddings[text]) for until, text in schedule], weight)

    def _encode_quietly(self, texts: list[str], clip_skip: int | None) -> dict[str, Embedding]:
        """Each distinct text once; its syntax problems were already reported by ``parse_prompt``."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PromptSyntaxWarning)
            return {text: self.encode(text, clip_skip) for text in dict.fromkeys(texts)}

    def conditioning(self, prompt: str, negative_prompt: str = "", steps: int = 20, strict: bool = False,
                     clip_skip: int | None = None) -> Conditioning:
        """AND terms of ``prompt`` and the ``negative_prompt`` term (A1111: no AND split there), all scheduled.

        Every embedding is padded to the longest one's chunk count with the empty prompt's chunk, as A1111
        does with "pad prompt/negative prompt to the same length", so cond and uncond batch together.
        """
        positive = parse_prompt(prompt, steps, strict)
        negative = parse_prompt(negative_prompt, steps, strict, and_split=False)
        embeddings = self._encode_quietly(positive.texts() + negative.texts() + [""], clip_skip)
        tokens = max(embedding.hidden.shape[1] for embedding in embeddings.values())
        empty = embeddings[""].hidden
        padded = {text: _pad_to(embedding, tokens, empty) for text, embedding in embeddings.items()}
        terms = [CondTerm([(until, padded[text]) for until, text in term.schedule], term.weight)
                 for term in positive.terms]
        uncond = CondTerm([(until, padded[text]) for until, text in negative.terms[0].schedule])
        return Conditioning(terms=terms, negative=uncond,
                            extras={"prompt": prompt, "negative_prompt": negative_prompt, "steps": steps})


def _pad_to(embedding: Embedding, tokens: int, empty: torch.Tensor) -> Embedding:
    missing = (tokens - embedding.hidden.shape[1]) // empty.shape[1]
    if missing == 0:
        return embedding
    hidden = torch.cat([embedding.hidden, *[empty] * missing], dim=1)
    return Embedding(hidden=hidden, pooled=embedding.pooled)


def _copy(embedding: Embedding) -> Embedding:
    """Callers get their own tensors, so editing one in place cannot corrupt the cache."""
    pooled = None if embedding.pooled is None else embedding.pooled.clone()
    return Embedding(hidden=embedding.hidden.clone(), pooled=pooled)
