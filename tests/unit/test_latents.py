"""LERP/SLERP/N-way blends against ALGORITHMS §1's oracles, and the pad's blend weights against geometry."""

import math

import pytest
import torch

from difftech_lab.errors import InvalidArgumentError, ShapeError
from difftech_lab.techniques.latents import (
    default_anchor_positions,
    lerp,
    linear_blend,
    navigator_weights,
    slerp,
    spherical_blend,
    typical_norm,
)


def _noise(seed, shape=(1, 4, 64, 64)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _angle(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return math.acos(max(-1.0, min(1.0, float(a @ b / (a.norm() * b.norm())))))


def test_endpoints_are_exact():
    a, b = _noise(0), _noise(1)
    assert torch.equal(slerp(a, b, 0.0), a)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    assert torch.equal(lerp(a, b, 0.0), a) and torch.equal(lerp(a, b, 1.0), b)


def test_slerp_of_unit_vectors_stays_unit_and_angle_grows_linearly():
    a, b = _noise(2, (1, 8)), _noise(3, (1, 8))
    a, b = a / a.norm(), b / b.norm()
    theta = _angle(a, b)
    for t in (0.1, 0.3, 0.5, 0.8):
        out = slerp(a, b, t)
        assert float(out.norm()) == pytest.approx(1.0, abs=1e-6)
        assert _angle(a, out) == pytest.approx(t * theta, abs=1e-5)


def test_midpoint_norm_kept_by_slerp_and_lost_by_lerp():
    a, b = _noise(4), _noise(5)  # d = 16384
    d = a[0].numel()
    assert float(slerp(a, b, 0.5).norm()) / math.sqrt(d) == pytest.approx(1.0, abs=0.02)
    assert float(lerp(a, b, 0.5).norm()) / math.sqrt(d) == pytest.approx(math.sqrt(0.5), abs=0.02)


def test_near_parallel_gives_no_nan():
    a = _noise(6, (1, 16))
    out = slerp(a, a * (1 + 1e-7), 0.5)
    assert torch.isfinite(out).all() and torch.allclose(out, a, atol=1e-5)


def test_slerp_is_per_batch_item():
    a, b, c = _noise(7, (2, 4, 8, 8)), _noise(8, (2, 4, 8, 8)), _noise(9, (1, 4, 8, 8))
    both = slerp(a, b, 0.3)
    assert torch.allclose(both[:1], slerp(a[:1], b[:1], 0.3), atol=1e-6)
    swapped = slerp(torch.cat([a[:1], c]), torch.cat([b[:1], c * 2]), 0.3)
    assert torch.allclose(swapped[:1], both[:1], atol=1e-6)


def test_spherical_blend_reproduces_slerp_for_two_equal_norm_inputs():
    a, b = _noise(10, (2, 4, 8, 8)), _noise(11, (2, 4, 8, 8))
    b = b * (a.flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1))[:, None, None, None]
    for t in (0.0, 0.25, 0.7, 1.0):
        assert torch.allclose(spherical_blend([a, b], [1 - t, t]), slerp(a, b, t), atol=1e-5)


def test_spherical_blend_one_hot_returns_the_anchor_and_is_symmetric():
    zs = [_noise(s, (1, 4, 8, 8)) for s in (12, 13, 14)]
    assert torch.allclose(spherical_blend(zs, [0, 1, 0]), zs[1], atol=1e-5)
    w = [0.2, 0.5, 0.3]
    forward = spherical_blend(zs, w)
    backward = spherical_blend(zs[::-1], w[::-1])
    assert torch.allclose(forward, backward, atol=1e-6)


@pytest.mark.parametrize("weights", [[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1], [0.5, 0.5, 0, 0]])
def test_spherical_blend_keeps_norm_near_sqrt_d(weights):
    zs = [_noise(20 + s) for s in range(4)]
    d = zs[0][0].numel()
    assert float(spherical_blend(zs, weights).norm()) / math.sqrt(d) == pytest.approx(1.0, abs=0.02)
    # the weighted sum without rescaling is the off-distribution blend the sphere avoids
    if max(weights) < 1:
        assert float(linear_blend(zs, weights).norm()) / math.sqrt(d) < 0.9


def test_spherical_blend_direction_is_stationary():
    """The Karcher mean's defining property: the weighted tangent vectors at the result sum to zero."""
    zs = [_noise(30 + s, (1, 64)).double() for s in range(3)]
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    p = spherical_blend(zs, w).flatten()
    p = p / p.norm()
    total = torch.zeros_like(p)
    for wi, z in zip(w, zs):
        u = z.flatten() / z.norm()
        cos = float(p @ u)
        theta = math.acos(cos)
        total += wi * theta / math.sin(theta) * (u - cos * p)
    assert float(total.norm()) < 1e-8


def test_antipodal_blend_is_refused():
    a = _noise(40, (1, 16))
    with pytest.raises(InvalidArgumentError, match="antipodal"):
        spherical_blend([a, -a], [0.5, 0.5])


def test_blend_input_errors_name_the_problem():
    a = _noise(41, (1, 16))
    with pytest.raises(ShapeError, match="one weight per latent"):
        spherical_blend([a, a], [1.0])
    with pytest.raises(InvalidArgumentError, match="non-negative"):
        linear_blend([a, a], [1.0, -0.5])
    with pytest.raises(ShapeError, match="share one shape"):
        lerp(a, a[:, :8], 0.5)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_weights_are_one_hot_at_anchors(n):
    pos = default_anchor_positions(n)
    for i, p in enumerate(pos):
        w = navigator_weights(p, pos)
        assert torch.allclose(w, torch.eye(n, dtype=torch.float64)[i], atol=1e-9)


def test_two_anchor_weights_project_onto_the_segment():
    pos = default_anchor_positions(2)
    assert navigator_weights((0.3, 0.9), pos).tolist() == pytest.approx([0.7, 0.3])
    assert navigator_weights((-1.0, 0.5), pos).tolist() == pytest.approx([1.0, 0.0])


def test_three_anchor_weights_are_barycentric():
    pos = default_anchor_positions(3)
    lam = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    point = (lam[:, None] * torch.tensor(pos, dtype=torch.float64)).sum(0)
    assert torch.allclose(navigator_weights(point.tolist(), pos), lam, atol=1e-9)


@pytest.mark.parametrize("point", [(0.3, 0.6), (0.9, 0.1), (0.5, 0.5), (0.5, 0.0), (0.01, 0.99)])
def test_four_anchor_weights_have_linear_precision(point):
    pos = default_anchor_positions(4)
    w = navigator_weights(point, pos)
    assert float(w.sum()) == pytest.approx(1.0) and bool((w >= 0).all())
    assert (w[:, None] * torch.tensor(pos, dtype=torch.float64)).sum(0).tolist() == pytest.approx(list(point))


def test_square_centre_weighs_all_corners_equally_and_edges_are_linear():
    pos = default_anchor_positions(4)
    assert navigator_weights((0.5, 0.5), pos).tolist() == pytest.approx([0.25] * 4)
    assert navigator_weights((0.25, 0.0), pos).tolist() == pytest.approx([0.75, 0.25, 0, 0], abs=1e-12)


def test_points_outside_are_clamped_to_the_boundary():
    pos = default_anchor_positions(4)
    assert navigator_weights((2.0, 0.5), pos).tolist() == pytest.approx([0, 0.5, 0.5, 0], abs=1e-12)


def test_anchor_order_does_not_matter():
    pos = default_anchor_positions(4)
    shuffled = [pos[2], pos[0], pos[3], pos[1]]
    w = navigator_weights((0.3, 0.7), pos)
    ws = navigator_weights((0.3, 0.7), shuffled)
    assert ws.tolist() == pytest.approx(w[[2, 0, 3, 1]].tolist())


def test_degenerate_anchor_layouts_are_refused():
    with pytest.raises(InvalidArgumentError, match="convex position"):
        navigator_weights((0.5, 0.5), [(0, 0), (0.5, 0.5), (1, 1)])
    with pytest.raises(InvalidArgumentError, match="convex position"):
        navigator_weights((0.5, 0.5), [(0, 0), (1, 0), (0.5, 0.2), (0, 1)])
    with pytest.raises(InvalidArgumentError, match="same position"):
        navigator_weights((0.5, 0.5), [(0.2, 0.2), (0.2, 0.2)])
    with pytest.raises(ShapeError, match="2–4 anchor"):
        navigator_weights((0.5, 0.5), [(0, 0)] * 5)


def test_typical_norm():
    assert typical_norm((4, 64, 64)) == 128.0
