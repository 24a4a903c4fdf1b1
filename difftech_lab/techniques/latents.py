"""Moving between latents: LERP, SLERP, N-way spherical blends, and a 2-D pad's blend weights.

Initial noise is a point on the shell ‖z‖ ≈ √d of a d-dimensional Gaussian; blends of noise must stay on it,
or the image washes out (ALGORITHMS §1). Text embeddings are not on such a shell and blend linearly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import InvalidArgumentError, ShapeError

DOT_THRESHOLD = 0.9995  # near-parallel inputs fall back to LERP (diffusers' interpolate_stable_diffusion)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation ``(1-t)·a + t·b``."""
    _check_same_shape([a, b])
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dot_threshold: float = DOT_THRESHOLD) -> torch.Tensor:
    """Spherical linear interpolation (Shoemake 1985), per batch item over all C·H·W elements.

    The coefficients come from the angle only, so the norms are interpolated implicitly. Near-parallel items
    use LERP (the formula divides by sin θ ≈ 0). Antiparallel items have no unique great circle: the result
    is then one arbitrary path through the plane of ``a`` and ``b``, and no blend of them is meaningful.
    """
    _check_same_shape([a, b])
    a_f, b_f = _flat(a), _flat(b)
    dot = (a_f * b_f).sum(-1) / (a_f.norm(dim=-1) * b_f.norm(dim=-1)).clamp_min(torch.finfo(a_f.dtype).tiny)
    dot = dot.clamp(-1.0, 1.0)
    theta = torch.arccos(dot)
    sin_theta = torch.sin(theta)
    parallel = dot.abs() > dot_threshold
    safe_sin = torch.where(parallel, torch.ones_like(sin_theta), sin_theta)
    c_a = torch.where(parallel, torch.full_like(theta, 1 - t), torch.sin((1 - t) * theta) / safe_sin)
    c_b = torch.where(parallel, torch.full_like(theta, t), torch.sin(t * theta) / safe_sin)
    out = c_a[:, None] * a_f + c_b[:, None] * b_f
    return out.reshape(a.shape).to(a.dtype)


def spherical_blend(
    values: Sequence[torch.Tensor], weights: Sequence[float] | torch.Tensor, iterations: int = 20
) -> torch.Tensor:
    """Weighted spherical average of N latents (Buss & Fillmore 2001), per batch item over all C·H·W.

    The direction is the weighted Karcher mean of the unit directions on the sphere (iterated: map every
    direction to the tangent plane at the estimate, average with the weights, map back); the norm is the
    weighted mean of the input norms. So independent unit-Gaussian noises of dimension d blend to norm ≈ √d at
    every weight, two inputs of equal norm reproduce :func:`slerp` exactly, and a one-hot weight returns that
    input. This is symmetric in the inputs, unlike iterated pairwise SLERP, whose result depends on the order.
    """
    _check_same_shape(values)
    w = _normalised_weights(weights, len(values))
    z = torch.stack([_flat(v).double() for v in values])  # [N, B, d]
    r = z.norm(dim=-1, keepdim=True)  # [N, B, 1]
    u = z / r.clamp_min(torch.finfo(torch.float64).tiny)
    wk = w.double()[:, None, None]
    p = (wk * u).sum(0)
    if bool((p.norm(dim=-1) < 1e-6).any()):
        raise InvalidArgumentError(
            "the latents to blend cancel out (antipodal directions); the spherical average is undefined — "
            "move the point or use blend mode 'linear'"
        )
    p = p / p.norm(dim=-1, keepdim=True)
    for _ in range(iterations):
        tangent = (wk * _sphere_log(p, u)).sum(0)
        p = _sphere_exp(p, tangent)
        if float(tangent.norm(dim=-1).max()) < 1e-12:
            break
    out = p * (wk * r).sum(0)
    return out.reshape(values[0].shape).to(values[0].dtype)


def linear_blend(values: Sequence[torch.Tensor], weights: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Weighted sum ``Σ wᵢ·vᵢ`` with the weights normalised to sum to 1 (for embeddings)."""
    _check_same_shape(values)
    w = _normalised_weights(weights, len(values))
    return sum(float(wi) * v for wi, v in zip(w, values))


def navigator_weights(point: Sequence[float], anchor_positions: Sequence[Sequence[float]]) -> torch.Tensor:
    """Blend weights of 2–4 anchors on a 2-D pad at ``point``: non-negative, summing to 1.

    Two anchors: the point is projected onto their segment and the weights are ``(1-t, t)``. Three or four
    anchors (in convex position): mean value coordinates (Floater 2003) of the convex polygon they span — the
    barycentric coordinates for a triangle, linear along every edge, one-hot at each anchor, and with linear
    precision ``Σ wᵢ·anchorᵢ = point``. A point outside the polygon is first moved to the nearest boundary point.
    """
    q = torch.as_tensor(point, dtype=torch.float64)
    v = torch.as_tensor(anchor_positions, dtype=torch.float64)
    if q.shape != (2,) or v.ndim != 2 or v.shape[1] != 2 or not 2 <= v.shape[0] <= 4:
        raise ShapeError(
            f"navigator_weights needs a point (x, y) and 2–4 anchor positions (x, y); got point of shape "
            f"{tuple(q.shape)} and anchors of shape {tuple(v.shape)}"
        )
    if v.shape[0] == 2:
        return _segment_weights(q, v[0], v[1])
    order = _convex_order(v)
    polygon = v[order]
    q = _clamp_into_polygon(q, polygon)
    w_poly = _mean_value_coordinates(q, polygon)
    w = torch.empty_like(w_poly)
    w[order] = w_poly
    return w


def default_anchor_positions(n: int) -> list[tuple[float, float]]:
    """Where n anchors sit on the unit pad: ends of the midline, a triangle, or the four corners."""
    layouts = {
        2: [(0.0, 0.5), (1.0, 0.5)],
        3: [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)],
        4: [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)],
    }
    if n not in layouts:
        raise InvalidArgumentError(f"a navigator pad holds 2 to 4 anchors, got {n}; pass 2, 3 or 4 anchors")
    return layouts[n]


def typical_norm(shape: Sequence[int]) -> float:
    """√d, the norm a unit-Gaussian latent item of shape ``[C, H, W]`` concentrates at."""
    return math.sqrt(math.prod(shape))


def _flat(x: torch.Tensor) -> torch.Tensor:
    if x.ndim < 2:
        raise ShapeError(f"latents must be batched [B, ...]; got shape {tuple(x.shape)} — add a batch dimension")
    return x.reshape(x.shape[0], -1)


def _check_same_shape(values: Sequence[torch.Tensor]) -> None:
    if len(values) == 0:
        raise InvalidArgumentError("nothing to blend; pass at least one latent")
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) != 1:
        raise ShapeError(f"latents to blend must share one shape; got {sorted(shapes)}")


def _normalised_weights(weights, n: int) -> torch.Tensor:
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if w.numel() != n:
        raise ShapeError(f"got {w.numel()} weights for {n} latents; pass one weight per latent")
    if bool((w < 0).any()) or float(w.sum()) <= 0:
        raise InvalidArgumentError(f"blend weights must be non-negative with a positive sum; got {w.tolist()}")
    return w / w.sum()


def _sphere_log(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Tangent vectors at p ([B, d]) pointing to each u ([N, B, d]), of length the angle between them."""
    cos = (p[None] * u).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    perp = u - cos * p[None]
    # θ/sin θ → 1 as θ → 0; the perpendicular part is then ~0 anyway
    scale = torch.where(theta > 1e-8, theta / torch.sin(theta).clamp_min(1e-300), torch.ones_like(theta))
    return scale * perp


def _sphere_exp(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    angle = v.norm(dim=-1, keepdim=True)
    direction = v / angle.clamp_min(1e-300)
    out = torch.cos(angle) * p + torch.sin(angle) * direction
    return out / out.norm(dim=-1, keepdim=True)


def _segment_weights(q: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ab = b - a
    length2 = float((ab * ab).sum())
    if length2 == 0:
        raise InvalidArgumentError(f"two anchors sit at the same position {a.tolist()}; place them apart")
    t = float(((q - a) * ab).sum()) / length2
    t = min(max(t, 0.0), 1.0)
    return torch.tensor([1 - t, t], dtype=torch.float64)


def _cross(o: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def _convex_order(v: torch.Tensor) -> torch.Tensor:
    """Indices of the anchors in counter-clockwise order; raises unless they are in strictly convex position."""
    centre = v.mean(0)
    order = torch.argsort(torch.atan2(v[:, 1] - centre[1], v[:, 0] - centre[0]))
    p = v[order]
    n = len(p)
    turns = [_cross(p[i], p[(i + 1) % n], p[(i + 2) % n]) for i in range(n)]
    if not all(t > 1e-12 for t in turns):
        raise InvalidArgumentError(
            f"anchor positions {v.tolist()} are not in convex position (collinear, repeated, or one inside "
            "the others); place 3 anchors as a triangle and 4 as a convex quadrilateral"
        )
    return order


def _clamp_into_polygon(q: torch.Tensor, polygon: torch.Tensor) -> torch.Tensor:
    n = len(polygon)
    if all(_cross(polygon[i], polygon[(i + 1) % n], q) >= 0 for i in range(n)):
        return q
    best, best_d = q, math.inf
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        t = float(_segment_weights(q, a, b)[1])
        c = a + t * (b - a)
        d = float(((c - q) ** 2).sum())
        if d < best_d:
            best, best_d = c, d
    return best


def _mean_value_coordinates(q: torch.Tensor, polygon: torch.Tensor) -> torch.Tensor:
    """Floater's mean value coordinates of q inside a counter-clockwise convex polygon (q may lie on an edge)."""
    n = len(polygon)
    s = polygon - q
    r = s.norm(dim=1)
    at_vertex = r < 1e-12
    if bool(at_vertex.any()):
        return at_vertex.double() / at_vertex.double().sum()
    for i in range(n):  # on an edge the coordinates are linear along it (the tan formula divides by 0 there)
        j = (i + 1) % n
        cross = float(s[i, 0] * s[j, 1] - s[i, 1] * s[j, 0])
        if abs(cross) < 1e-12 * float(r[i] * r[j]) and float((s[i] * s[j]).sum()) < 0:
            w = torch.zeros(n, dtype=torch.float64)
            w[i], w[j] = r[j] / (r[i] + r[j]), r[i] / (r[i] + r[j])
            return w
    alpha = torch.empty(n, dtype=torch.float64)  # alpha[i]: angle at q between s[i] and s[i+1]
    for i in range(n):
        j = (i + 1) % n
        cross = s[i, 0] * s[j, 1] - s[i, 1] * s[j, 0]
        alpha[i] = torch.atan2(cross, (s[i] * s[j]).sum())
    tan_half = torch.tan(alpha / 2)
    w = (tan_half.roll(1) + tan_half) / r
    return w / w.sum()
