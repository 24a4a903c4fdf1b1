"""PromptEncoder against plain CLIP calls on tiny random CLIP models (no downloads)."""

import json

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from difftech_lab.conditioning.encoder import PromptEncoder
from difftech_lab.errors import InvalidArgumentError

WORDS = ["a", "cat", "dog", "house", "on", "hill", "sun", "sky", "red", "big"]


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    """A BPE vocabulary in which each of WORDS is one token ``word</w>``."""
    path = tmp_path_factory.mktemp("clip_vocab")
    vocab, merges = {}, []
    for c in sorted(set("".join(WORDS))):
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    for word in WORDS:
        piece = word[0]
        for i, c in enumerate(word[1:]):
            nxt = c + "</w>" if i == len(word) - 2 else c
            merges.append(f"{piece} {nxt}")
            piece += nxt
            vocab.setdefault(piece, len(vocab))
    for token in [",</w>", ".</w>", "!", "<|startoftext|>", "<|endoftext|>"]:
        vocab[token] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return path


def tokenizer(vocab_dir, pad="<|endoftext|>"):
    return CLIPTokenizer(vocab=str(vocab_dir / "vocab.json"), merges=str(vocab_dir / "merges.txt"), pad_token=pad)


def text_model(tok, hidden=32, cls=CLIPTextModel, seed=0, **extra):
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=len(tok.get_vocab()), hidden_size=hidden, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=37, max_position_embeddings=77,
                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id, **extra)
    model = cls(config).eval()
    # a trained CLIP's final norm has a bias; at init it is 0, the mean of z is then 0 and A1111's mean
    # restore z *= mean(z_orig) / mean(z_new) would divide 0 by 0
    torch.nn.init.normal_(getattr(model, "text_model", model).final_layer_norm.bias, std=0.1)
    return model


@pytest.fixture(scope="module")
def sd1(vocab_dir):
    tok = tokenizer(vocab_dir)
    return tok, text_model(tok)


def plain(tok, model, text):
    ids = tok(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids, output_hidden_states=True)


def test_token_fixture_is_one_token_per_word(sd1):
    tok, _ = sd1
    assert len(tok(" ".join(WORDS), add_special_tokens=False).input_ids) == len(WORDS)


def test_unweighted_prompt_is_bit_identical_to_plain_encoding(sd1):
    tok, model = sd1
    text = "a big red house on a hill, sun"
    emb = PromptEncoder(tok, model).encode(text)
    assert emb.pooled is None
    assert torch.equal(emb.hidden, plain(tok, model, text).last_hidden_state)


def test_pad_token_differs_from_eos_as_in_openclip(vocab_dir):
    tok = tokenizer(vocab_dir, pad="!")
    model = text_model(tok)
    assert torch.equal(PromptEncoder(tok, model).encode("a cat").hidden, plain(tok, model, "a cat").last_hidden_state)


def test_weight_scales_only_its_tokens_then_mean_is_restored(sd1):
    tok, model = sd1
    z0 = plain(tok, model, "a cat dog").last_hidden_state
    unnormed = PromptEncoder(tok, model, emphasis="no_norm").encode("a (cat:1.5) dog").hidden
    expected = z0.clone()
    expected[:, 2] *= 1.5  # BOS, a, cat
    assert torch.equal(unnormed, expected)
    assert not torch.equal(unnormed[:, 2], z0[:, 2])

    original = PromptEncoder(tok, model).encode("a (cat:1.5) dog").hidden
    torch.testing.assert_close(original, expected * (z0.mean() / expected.mean()), rtol=0, atol=0)
    torch.testing.assert_close(original.mean(), z0.mean(), rtol=1e-6, atol=1e-7)


def test_long_prompt_uses_two_chunks(sd1):
    tok, model = sd1
    words = [WORDS[i % len(WORDS)] for i in range(80)]
    emb = PromptEncoder(tok, model).encode(" ".join(words))
    assert emb.hidden.shape == (1, 154, 32)
    assert torch.equal(emb.hidden[:, :77], plain(tok, model, " ".join(words[:75])).last_hidden_state)
    assert torch.equal(emb.hidden[:, 77:], plain(tok, model, " ".join(words[75:])).last_hidden_state)


def test_break_starts_a_new_chunk(sd1):
    tok, model = sd1
    emb = PromptEncoder(tok, model).encode("a cat BREAK red dog")
    assert emb.hidden.shape == (1, 154, 32)
    assert torch.equal(emb.hidden[:, :77], plain(tok, model, "a cat").last_hidden_state)
    assert torch.equal(emb.hidden[:, 77:], plain(tok, model, "red dog").last_hidden_state)


def test_full_chunk_moves_words_after_last_comma(sd1):
    tok, model = sd1
    head = " ".join(WORDS[i % len(WORDS)] for i in range(70))
    tail = " ".join(WORDS[i % len(WORDS)] for i in range(10))
    emb = PromptEncoder(tok, model).encode(f"{head}, {tail}")
    assert torch.equal(emb.hidden[:, :77], plain(tok, model, head + ",").last_hidden_state)
    assert torch.equal(emb.hidden[:, 77:], plain(tok, model, tail).last_hidden_state)
    unmoved = PromptEncoder(tok, model, comma_padding_backtrack=0).encode(f"{head}, {tail}")
    assert not torch.equal(unmoved.hidden, emb.hidden)


def test_clip_skip_2_is_penultimate_with_final_norm(sd1):
    tok, model = sd1
    out = plain(tok, model, "a cat")
    with torch.no_grad():
        expected = getattr(model, "text_model", model).final_layer_norm(out.hidden_states[-2])
    assert torch.equal(PromptEncoder(tok, model, clip_skip=2).encode("a cat").hidden, expected)
    with pytest.raises(InvalidArgumentError, match="clip_skip=5"):
        PromptEncoder(tok, model, clip_skip=5)


def test_cache_is_bit_identical_bounded_and_protected(sd1):
    tok, model = sd1
    encoder = PromptEncoder(tok, model, cache_size=2)
    first = encoder.encode("a cat")
    first.hidden.add_(1.0)  # callers' edits must not reach the cache
    again = encoder.encode("a cat")
    assert torch.equal(again.hidden, PromptEncoder(tok, model, cache_size=0).encode("a cat").hidden)
    assert encoder.cache_info() == (1, 1, 2, 1)
    encoder.encode("a dog")
    encoder.encode("a sun")
    assert encoder.cache_info().currsize == 2
    encoder.encode("a cat")
    assert encoder.cache_info().misses == 4  # "a cat" was evicted first


def test_sdxl_pair_concatenates_hidden_states_and_pools_second(vocab_dir):
    tok1, tok2 = tokenizer(vocab_dir), tokenizer(vocab_dir, pad="!")
    enc1 = text_model(tok1, hidden=32, seed=0)
    enc2 = text_model(tok2, hidden=48, cls=CLIPTextModelWithProjection, seed=1, projection_dim=16)
    emb = PromptEncoder(tok1, enc1, tok2, enc2).encode("a red cat")
    assert emb.hidden.shape == (1, 77, 80) and emb.pooled.shape == (1, 16)
    assert torch.equal(emb.hidden[..., :32], plain(tok1, enc1, "a red cat").hidden_states[-2])
    out2 = plain(tok2, enc2, "a red cat")
    assert torch.equal(emb.hidden[..., 32:], out2.hidden_states[-2])
    assert torch.equal(emb.pooled, out2.text_embeds)


def test_conditioning_schedules_and_weights_and_pads_chunks(sd1):
    tok, model = sd1
    encoder = PromptEncoder(tok, model)
    long_negative = " ".join(WORDS[i % len(WORDS)] for i in range(80))
    cond = encoder.conditioning("a [cat:dog:0.5] AND hill:0.5", long_negative, steps=10)
    first, second = cond.terms
    assert (first.weight, second.weight) == (1.0, 0.5)
    assert [until for until, _ in first.schedule] == [5, 10]
    assert torch.equal(first.at(4).hidden[:, :77], encoder.encode("a cat").hidden)
    assert torch.equal(first.at(5).hidden[:, :77], encoder.encode("a dog").hidden)
    # the shorter embeddings are padded with the empty prompt's chunk to the negative's two chunks
    assert cond.negative.at(0).hidden.shape == first.at(0).hidden.shape == (1, 154, 32)
    assert torch.equal(second.at(0).hidden[:, 77:], encoder.encode("").hidden)
    assert torch.equal(cond.negative.at(0).hidden, encoder.encode(long_negative).hidden)


def test_single_and_term_at_weight_one_equals_plain_prompt(sd1):
    tok, model = sd1
    encoder = PromptEncoder(tok, model)
    cond = encoder.conditioning("a red cat", "", steps=4)
    assert len(cond.terms) == 1 and cond.terms[0].weight == 1.0
    assert torch.equal(cond.terms[0].at(0).hidden, plain(tok, model, "a red cat").last_hidden_state)


def test_prompt_past_the_trained_captions_warns_naming_the_words_and_the_fix(sd1):
    import warnings

    from difftech_lab.errors import PromptLengthWarning

    tok, model = sd1
    encoder = PromptEncoder(tok, model, trained_tokens=6)  # BOS + 4 words + EOS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode("a big red cat")  # exactly the trained length
        encoder.encode("a big red cat BREAK on a hill")  # each part within it
        PromptEncoder(tok, model).encode("a big red cat on a hill")  # a model that says nothing: no warning
    with pytest.warns(PromptLengthWarning, match=r"7 tokens .*at most 6\).*'hill'.*BREAK") as caught:
        long = encoder.encode("a big red cat hill")
    assert caught[0].filename == __file__  # attributed to the caller's line, not the package's
    assert torch.equal(long.hidden, PromptEncoder(tok, model).encode("a big red cat hill").hidden)  # warns only


def test_a_syntax_warning_from_deep_in_the_encoder_points_at_the_callers_line(sd1):
    from difftech_lab.errors import PromptSyntaxWarning

    tok, model = sd1
    with pytest.warns(PromptSyntaxWarning, match="never closed") as caught:
        PromptEncoder(tok, model).encode("a (cat")
    assert caught[0].filename == __file__
