"""Paths through latent space on a session: the noise and embedding rows against ALGORITHMS §1's oracles (SLERP
keeps ‖z‖ ≈ √d, LERP dips to ≈ √(d/2) half-way; exact endpoints), one batch per path that replays, the pad's
blends, and direction moves that keep the noise on its sphere."""

import math

import pytest
import torch

from difftech_lab import Recipe
from difftech_lab.conditioning.types import Embedding
from difftech_lab.errors import InvalidArgumentError, ShapeError
from difftech_lab.techniques.latents import (embedding_path, interpolate, lerp, move, move_embedding, move_noise,
                                             navigate, navigator_weights, noise_path, path_ts, prompt_direction,
                                             slerp, slerp_tokens, spherical_blend, typical_norm)

RUN = dict(seed=0, steps=2, width=32, height=32, progress=False)


def _noise(seed, shape=(1, 4, 64, 64)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_path_ts():
    assert path_ts(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert path_ts([0, 0.3]) == [0.0, 0.3]
    for bad in (1, [], [0.5, 1.2], [-0.1], [float("nan")], "ab", True):
        with pytest.raises(InvalidArgumentError, match="ts="):
            path_ts(bad)


def test_noise_path_endpoints_and_norms_follow_the_oracle():
    ts = path_ts(9)
    d = 4 * 64 * 64  # 16384
    for seed in range(3):
        a, b = _noise(2 * seed), _noise(2 * seed + 1)
        sl, li = noise_path(a, b, ts, "slerp"), noise_path(a, b, ts, "lerp")
        assert sl.shape == li.shape == (len(ts), 4, 64, 64)
        assert torch.equal(sl[:1], a) and torch.equal(li[:1], a) and torch.equal(li[-1:], b)
        torch.testing.assert_close(sl[-1:], b, atol=1e-5, rtol=0)
        for t, z_s, z_l in zip(ts, sl, li):
            assert float(z_s.norm()) / math.sqrt(d) == pytest.approx(1.0, abs=0.02)
            # independent noises are nearly orthogonal: ‖(1-t)a + tb‖ ≈ √((1-t)² + t²)·√d
            assert float(z_l.norm()) / math.sqrt(d) == pytest.approx(math.hypot(1 - t, t), abs=0.02)
        assert float(li[4].norm()) / math.sqrt(d) == pytest.approx(math.sqrt(0.5), abs=0.02)
        assert float(li[4].norm()) / typical_norm(a.shape[1:]) < 0.75


def test_noise_path_rows_are_the_pairwise_blends():
    a, b = _noise(5, (1, 4, 8, 8)), _noise(6, (4, 8, 8))  # an unbatched endpoint is one item
    rows = noise_path(a, b, [0.2, 0.7], "slerp")
    assert torch.equal(rows[1:], slerp(a, b[None], 0.7))
    with pytest.raises(InvalidArgumentError, match="noise_mode='cubic'"):
        noise_path(a, b, [0.5], "cubic")
    with pytest.raises(ShapeError, match="one noise item"):
        noise_path(torch.cat([a, a]), b, [0.5])


def test_embedding_paths():
    a = Embedding(_noise(7, (1, 5, 16)), _noise(8, (1, 6)))
    b = Embedding(_noise(9, (1, 5, 16)), _noise(10, (1, 6)))
    path = embedding_path(a, b, [0.0, 0.25, 1.0])
    assert path.hidden.shape == (3, 5, 16) and path.pooled.shape == (3, 6)
    assert torch.equal(path.hidden[1:2], lerp(a.hidden, b.hidden, 0.25))
    assert torch.equal(path.hidden[:1], a.hidden) and torch.equal(path.pooled[2:], b.pooled)
    spherical = embedding_path(a, b, [0.5], "slerp")
    for k in range(5):  # token by token: each token's vector on its own great circle
        assert torch.allclose(spherical.hidden[0, k], slerp(a.hidden[:, k], b.hidden[:, k], 0.5)[0], atol=1e-6)
    unit_a, unit_b = a.hidden / a.hidden.norm(dim=-1, keepdim=True), b.hidden / b.hidden.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(slerp_tokens(unit_a, unit_b, 0.3).norm(dim=-1), torch.ones(1, 5))
    with pytest.raises(ShapeError, match="77-token chunk"):
        embedding_path(a, Embedding(_noise(11, (1, 6, 16)), b.pooled), [0.5])


def test_move_noise_keeps_the_norm_and_turns_by_atan_strength():
    z, d = _noise(12), _noise(13)
    assert torch.equal(move_noise(z, d, 0.0), z)
    u = d - (d.flatten() @ z.flatten()) / (z.flatten() @ z.flatten()) * z  # exactly orthogonal to z
    for s in (0.5, 1.0, -2.0):
        moved = move_noise(z, u * 7.0, s)  # the direction's length does not matter
        assert float(moved.norm()) == pytest.approx(float(z.norm()), rel=1e-5)
        cos = float(moved.flatten().double() @ z.flatten().double() / (moved.norm() * z.norm()))
        assert math.acos(min(1.0, cos)) == pytest.approx(math.atan(abs(s)), abs=1e-4)
    batch = torch.cat([z, d])
    torch.testing.assert_close(move_noise(batch, d, 0.5)[:1], move_noise(z, d, 0.5))  # per item
    with pytest.raises(InvalidArgumentError, match="zero"):
        move_noise(z, torch.zeros_like(z), 1.0)
    with pytest.raises(ShapeError, match="does not fit"):
        move_noise(z, _noise(14, (1, 4, 8, 8)), 1.0)


@pytest.mark.usefixtures("one_torch_thread")
def test_interpolate_renders_one_batch_of_the_path_that_replays(tiny_session):
    ts = [0.0, 0.5, 1.0]
    same = interpolate(tiny_session, ("a star", 1), ("a star", 2), ts, **RUN)
    assert len(same.images) == 3 and same.recipe.params["prompt"] == "a star"  # one prompt: used as given
    a, b = tiny_session.noise(1, 32, 32), tiny_session.noise(2, 32, 32)
    recorded = Recipe.from_json(same.recipe.to_json())
    assert torch.equal(tiny_session.run(recorded).latents, same.latents)
    from difftech_lab.recipe import decode_value
    assert torch.equal(decode_value(same.recipe.params["noise"]), noise_path(a, b, ts, "slerp"))
    # the endpoints are plain generations with the endpoints' noise
    torch.testing.assert_close(same.latents[:1], tiny_session.generate("a star", noise=a, **RUN).latents,
                               atol=1e-4, rtol=0)

    mixed = interpolate(tiny_session, ("a star", 1), ("a circle", 2), ts, noise_mode="lerp", **RUN)
    prompt = decode_value(mixed.recipe.params["prompt"])
    expected = embedding_path(tiny_session.encode_prompt("a star"), tiny_session.encode_prompt("a circle"), ts)
    assert torch.equal(prompt.hidden, expected.hidden)
    assert torch.equal(decode_value(mixed.recipe.params["noise"]), noise_path(a, b, ts, "lerp"))
    # each row of the batch is its own image: row 1 alone, with its noise and embedding row, gives the same
    alone = tiny_session.generate(Embedding(expected.hidden[1:2]), noise=noise_path(a, b, [0.5], "lerp"), **RUN)
    torch.testing.assert_close(mixed.latents[1:2], alone.latents, atol=1e-4, rtol=0)
    assert torch.equal(tiny_session.run(mixed.recipe).latents, mixed.latents)


@pytest.mark.usefixtures("one_torch_thread")
def test_many_paths_in_one_batch_are_path_by_path(tiny_session):
    both = interpolate(tiny_session, [("a star", 1), ("a circle", 3)], [("a star", 2), ("a square", 4)], [0.0, 0.5],
                       **RUN)
    from difftech_lab.recipe import decode_value
    noise, prompt = decode_value(both.recipe.params["noise"]), decode_value(both.recipe.params["prompt"])
    n = [tiny_session.noise(s, 32, 32) for s in (1, 2, 3, 4)]
    assert torch.equal(noise, torch.cat([noise_path(n[0], n[1], [0, 0.5]), noise_path(n[2], n[3], [0, 0.5])]))
    star, circle, square = (tiny_session.encode_prompt(p) for p in ("a star", "a circle", "a square"))
    assert torch.equal(prompt.hidden[:2], star.hidden.repeat(2, 1, 1))  # a path with one prompt keeps it
    assert torch.equal(prompt.hidden[2:], embedding_path(circle, square, [0, 0.5]).hidden)
    assert len(both.images) == 4


@pytest.mark.usefixtures("one_torch_thread")
def test_navigate_blends_the_anchors_like_the_navigator(tiny_session):
    anchors = [("a star", 1), ("a circle", 2), ("a square", 3)]
    points = [(0.5, 0.0), (0.5, 0.6)]
    result = navigate(tiny_session, anchors, points, **RUN)
    from difftech_lab.recipe import decode_value
    noise = decode_value(result.recipe.params["noise"])
    noises = [tiny_session.noise(s, 32, 32) for s in (1, 2, 3)]
    positions = [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)]
    assert torch.equal(noise[:1], spherical_blend(noises, navigator_weights(points[0], positions)))
    torch.testing.assert_close(noise[:1], noises[0], atol=1e-5, rtol=0)  # at an anchor: that anchor's noise
    assert torch.equal(noise[1:], spherical_blend(noises, navigator_weights(points[1], positions)))
    assert torch.equal(tiny_session.run(result.recipe).latents, result.latents)
    with pytest.raises(InvalidArgumentError, match="2 to 4 anchors"):
        navigate(tiny_session, anchors[:1], points, **RUN)


@pytest.mark.usefixtures("one_torch_thread")
def test_direction_moves(tiny_session):
    e, d = tiny_session.encode_prompt("a star"), prompt_direction(tiny_session, "a circle", "a square")
    torch.testing.assert_close(d.hidden, tiny_session.encode_prompt("a circle").hidden
                               - tiny_session.encode_prompt("a square").hidden)
    assert torch.equal(move_embedding(e, d, 0.0).hidden, e.hidden)
    to_circle = move_embedding(e, prompt_direction(tiny_session, "a circle", "a star"), 1.0)
    torch.testing.assert_close(to_circle.hidden, tiny_session.encode_prompt("a circle").hidden)

    result = move(tiny_session, ("a star", 1), [0.0, 0.5], towards="a circle", away="a square", noise_direction=9,
                  **RUN)
    from difftech_lab.recipe import decode_value
    noise, prompt = decode_value(result.recipe.params["noise"]), decode_value(result.recipe.params["prompt"])
    z, u = tiny_session.noise(1, 32, 32), tiny_session.noise(9, 32, 32)
    assert torch.equal(noise[:1], z) and torch.equal(noise[1:], move_noise(z, u, 0.5))
    assert torch.equal(prompt.hidden[:1], e.hidden) and torch.equal(prompt.hidden[1:], move_embedding(e, d, 0.5).hidden)
    assert torch.equal(tiny_session.run(result.recipe).latents, result.latents)


@pytest.mark.parametrize("call, error, match", [
    (lambda s: interpolate(s, ("a star", 1), ("a star", 2), [0.5], batch_size=2, **RUN), InvalidArgumentError,
     "drop batch_size"),
    (lambda s: interpolate(s, ("a star",), ("a star", 2), [0.5], **RUN), InvalidArgumentError, r"\(prompt, seed\)"),
    (lambda s: interpolate(s, ("a star", torch.zeros(1, 4, 2, 2)), ("a star", 2), [0.5], **RUN), ShapeError,
     r"32x32 needs \(1, 4, 16, 16\)"),
    (lambda s: interpolate(s, ("a star", 1.5), ("a star", 2), [0.5], **RUN), InvalidArgumentError, "seed \\(int\\)"),
    (lambda s: interpolate(s, [("a", 1)], [("b", 2), ("c", 3)], [0.5], **RUN), InvalidArgumentError, "equal-length"),
    (lambda s: interpolate(s, ("a", 1), ("b", 2), [0.5], prompt_mode="cubic", **RUN), InvalidArgumentError,
     "prompt_mode"),
    (lambda s: move(s, ("a star", 1), [0.5], **RUN), InvalidArgumentError, "nothing to move along"),
    (lambda s: move(s, ("a star", 1), [0.5], towards="a circle", **RUN), InvalidArgumentError, "both towards"),
    (lambda s: move(s, ("a star", 1), [], noise_direction=2, **RUN), InvalidArgumentError, "strengths"),
])
def test_bad_input_is_refused(tiny_session, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny_session)
