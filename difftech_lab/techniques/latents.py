"""Moving between latents: LERP, SLERP, N-way spherical blends, and a 2-D pad's blend weights.

Initial noise is a point on the shell ‖z‖ ≈ √d of a d-dimensional Gaussian; blends of noise must stay on it,
or the image washes out (ALGORITHMS §1). Text embeddings are not on such a shell and blend linearly.

On a session: :func:`interpolate` renders a path between two (prompt, seed) endpoints, :func:`navigate` points of
a pad spanned by 2–4 anchors, and :func:`move` steps along a prompt direction or a noise direction; each renders
its images as one batch whose Recipe replays them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..conditioning.types import Embedding
from ..errors import InvalidArgumentError, ShapeError
from .txt2img import check_prompt

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


# ------------------------------------------------------------------------------------ paths through a session
# Endpoints and anchors are ``(prompt, seed)``: a prompt (str or Embedding) and a seed (int) or a noise tensor
# ``[1, C, h, w]``. Every path renders as one batch: one ``generate`` call with one row of noise (and, when the
# prompts differ, one row of prompt embedding) per image, so its Recipe holds the blends and replays them.

NOISE_MODES = ("slerp", "lerp")
PROMPT_MODES = ("lerp", "slerp")


def path_ts(ts) -> list[float]:
    """The t values of a path: ``ts`` itself (numbers in [0, 1]), or for an int n, n evenly spaced from 0 to 1."""
    if isinstance(ts, int) and not isinstance(ts, bool):
        if ts < 2:
            raise InvalidArgumentError(f"ts={ts}: a path needs at least 2 points (its two ends); give n ≥ 2 or a "
                                       "list of t values in [0, 1]")
        return [k / (ts - 1) for k in range(ts)]
    try:
        values = [float(t) for t in ts]
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"ts={ts!r}: give a number of points or a list of t values in [0, 1]") from None
    if not values or not all(0.0 <= t <= 1.0 for t in values):
        raise InvalidArgumentError(f"ts={values}: give at least one t, each in [0, 1] (0: the first end, 1: the "
                                   "second)")
    return values


def noise_path(a: torch.Tensor, b: torch.Tensor, ts, mode: str = "slerp") -> torch.Tensor:
    """The noises at ``ts`` on the way from ``a`` to ``b`` (each ``[1, C, h, w]`` or ``[C, h, w]``), one row per t.

    "slerp" keeps ‖z‖ ≈ √d all along the path between independent unit-Gaussian noises; "lerp" dips to ≈ √(d/2)
    half-way, so the sampler starts from too little noise there.
    """
    _check_mode(mode, NOISE_MODES, "noise_mode")
    a, b = _one_item(a, "a"), _one_item(b, "b")
    blend = slerp if mode == "slerp" else lerp
    return torch.cat([blend(a, b, t) for t in path_ts(ts)])


def slerp_tokens(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """SLERP of hidden states ``[..., D]`` token by token: each D-vector moves on its own great circle."""
    _check_same_shape([a, b])
    d = a.shape[-1]
    return slerp(a.reshape(-1, d), b.reshape(-1, d), t).reshape(a.shape)


def embedding_path(a: Embedding, b: Embedding, ts, mode: str = "lerp") -> Embedding:
    """The prompt embeddings at ``ts`` on the way from ``a`` to ``b``, one row per t (hidden ``[len(ts), T, D]``).

    "lerp" blends linearly (text embeddings lie on no shell, so this is the usual choice); "slerp" blends token by
    token on the sphere (:func:`slerp_tokens`).
    """
    _check_mode(mode, PROMPT_MODES, "prompt_mode")
    _check_embeddings([a, b])
    blend = lerp if mode == "lerp" else slerp_tokens
    ts = path_ts(ts)
    hidden = torch.cat([blend(a.hidden, b.hidden, t) for t in ts])
    pooled = None if a.pooled is None else torch.cat([blend(a.pooled, b.pooled, t) for t in ts])
    return Embedding(hidden=hidden, pooled=pooled)


def interpolate(session, a, b, ts=5, *, noise_mode: str = "slerp", prompt_mode: str = "lerp",
                negative_prompt: str = "", **options):
    """Images along the path from endpoint ``a`` to ``b``, one per t, rendered as one batch.

    Each endpoint is ``(prompt, seed)`` (the seed may be a noise tensor ``[1, C, h, w]``); ``ts`` is a list of t in
    [0, 1] or a number of evenly spaced points. The noise is blended by ``noise_mode`` ("slerp" or "lerp"), the
    prompt embeddings by ``prompt_mode`` ("lerp" or "slerp" per token); a prompt shared by both ends is used as
    given. ``a`` and ``b`` may also be equal-length lists of endpoints: many paths in one batch, image
    ``k·len(ts) + j`` being path k at ``ts[j]``. ``options`` are ``generate``'s settings (not batch_size: the batch
    is one image per path and t). Returns the Result of that one call; ``session.run(result.recipe)`` reproduces it.
    """
    _own_batch(options, "interpolate", "len(ts) per path")
    ts = path_ts(ts)
    _check_mode(prompt_mode, PROMPT_MODES, "prompt_mode")
    many = isinstance(a, list) and all(isinstance(end, (tuple, list)) for end in a)
    starts, ends = (a, b) if many else ([a], [b])
    if not isinstance(ends, list) or len(starts) != len(ends) or not starts:
        raise InvalidArgumentError(f"give one endpoint or two equal-length, non-empty lists of endpoints; got "
                                   f"{len(starts)} and {len(ends) if isinstance(ends, list) else 'one'}")
    paths = [(_endpoint(session, s, f"a[{k}]" if many else "a", options),
              _endpoint(session, e, f"b[{k}]" if many else "b", options)) for k, (s, e) in enumerate(zip(starts, ends))]
    noise = torch.cat([noise_path(na, nb, ts, noise_mode) for (_, na), (_, nb) in paths])
    prompts = [p for (pa, _), (pb, _) in paths for p in (pa, pb)]
    if _same_prompt(prompts):
        prompt = prompts[0]
    else:
        rows = []
        for (pa, _), (pb, _) in paths:
            ea, eb = _embeddings(session, [pa, pb], options)
            rows.append(_repeat(ea, len(ts)) if _same_prompt([pa, pb]) else embedding_path(ea, eb, ts, prompt_mode))
        _check_embeddings(rows)
        prompt = Embedding(hidden=torch.cat([r.hidden for r in rows]),
                           pooled=None if rows[0].pooled is None else torch.cat([r.pooled for r in rows]))
    return session.generate(prompt, negative_prompt, noise=noise, batch_size=len(noise), **options)


def navigate(session, anchors, points, *, positions=None, noise_mode: str = "slerp", prompt_mode: str = "lerp",
             negative_prompt: str = "", **options):
    """One image per point of the pad spanned by 2–4 anchors, rendered as one batch (LatentNavigator's blend).

    ``anchors`` are ``(prompt, seed)`` pairs placed at ``positions`` (default: :func:`default_anchor_positions`);
    each point ``(x, y)`` on the unit pad blends them with :func:`navigator_weights`: the noises by
    :func:`spherical_blend` ("slerp") or :func:`linear_blend` ("lerp"), the embeddings linearly ("lerp") or per
    token on the sphere ("slerp"). ``options`` are ``generate``'s settings (the batch is ``len(points)``).
    """
    _own_batch(options, "navigate", "len(points)")
    anchors = list(anchors)
    if not 2 <= len(anchors) <= 4:
        raise InvalidArgumentError(f"navigate takes 2 to 4 anchors, got {len(anchors)}")
    _check_mode(noise_mode, NOISE_MODES, "noise_mode")
    _check_mode(prompt_mode, PROMPT_MODES, "prompt_mode")
    positions = default_anchor_positions(len(anchors)) if positions is None else positions
    points = list(points)
    if not points:
        raise InvalidArgumentError("navigate needs at least one point (x, y) on the unit pad")
    weights = [navigator_weights(p, positions) for p in points]
    ends = [_endpoint(session, anchor, f"anchor {k}", options) for k, anchor in enumerate(anchors)]
    noises = [noise for _, noise in ends]
    blend = spherical_blend if noise_mode == "slerp" else linear_blend
    noise = torch.cat([blend(noises, w) for w in weights])
    prompts = [prompt for prompt, _ in ends]
    if _same_prompt(prompts):
        prompt = prompts[0]
    else:
        embeddings = _embeddings(session, prompts, options)
        _check_embeddings(embeddings)
        rows = [_blend_embeddings(embeddings, w, prompt_mode) for w in weights]
        prompt = Embedding(hidden=torch.cat([r.hidden for r in rows]),
                           pooled=None if rows[0].pooled is None else torch.cat([r.pooled for r in rows]))
    return session.generate(prompt, negative_prompt, noise=noise, batch_size=len(points), **options)


def prompt_direction(session, towards: str, away: str, *, clip_skip: int = 1) -> Embedding:
    """The direction ``E(towards) − E(away)`` between two prompts' embeddings (hidden states and pooled vector)."""
    e_to, e_from = _embeddings(session, [towards, away], {"clip_skip": clip_skip})
    _check_embeddings([e_to, e_from])
    return Embedding(hidden=e_to.hidden - e_from.hidden,
                     pooled=None if e_to.pooled is None else e_to.pooled - e_from.pooled)


def move_embedding(embedding: Embedding, direction: Embedding, strength: float) -> Embedding:
    """``embedding + strength·direction``, hidden states and pooled vector alike."""
    _check_embeddings([embedding, direction])
    return Embedding(hidden=embedding.hidden + strength * direction.hidden,
                     pooled=None if embedding.pooled is None else embedding.pooled + strength * direction.pooled)


def move_noise(noise: torch.Tensor, direction: torch.Tensor, strength: float) -> torch.Tensor:
    """``noise`` moved along ``direction`` and put back on its own sphere, per batch item.

    ``z' = (z + s·‖z‖·u) · ‖z‖ / ‖z + s·‖z‖·u‖`` with ``u = direction / ‖direction‖``: the norm (≈ √d for
    unit-Gaussian noise) is kept, strength 0 returns ``z``, and a direction orthogonal to ``z`` (an independent
    noise is, nearly) turns it by atan(s) towards that direction: s = 1 is 45°, large s approaches it.
    """
    if direction.shape != noise.shape and (direction.shape[0] != 1 or direction.shape[1:] != noise.shape[1:]):
        raise ShapeError(f"direction of shape {tuple(direction.shape)} does not fit noise of shape "
                         f"{tuple(noise.shape)}; give one of the noise's shape (or one row of it)")
    z, d = _flat(noise).double(), _flat(direction).double()
    d_norm = d.norm(dim=-1, keepdim=True)
    if bool((d_norm == 0).any()) or not torch.isfinite(d).all():
        raise InvalidArgumentError("the noise direction is zero or not finite; give a nonzero finite direction "
                                   "(e.g. session.noise(another_seed))")
    r = z.norm(dim=-1, keepdim=True)
    moved = z + float(strength) * r * (d / d_norm)
    out = moved * (r / moved.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny))
    return out.reshape(noise.shape).to(noise.dtype)


def move(session, start, strengths, *, towards: str | None = None, away: str | None = None,
         noise_direction=None, negative_prompt: str = "", **options):
    """One image per strength, rendered as one batch, from ``start`` = ``(prompt, seed)``: the prompt's embedding
    moved along ``E(towards) − E(away)`` (:func:`prompt_direction`, :func:`move_embedding`) and/or the seed's noise
    moved along ``noise_direction`` (a seed or a noise tensor; :func:`move_noise`). Strength 0 is the start itself;
    negative strengths move the other way. ``options`` are ``generate``'s settings (the batch is
    ``len(strengths)``)."""
    _own_batch(options, "move", "len(strengths)")
    try:
        strengths = [float(s) for s in strengths]
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"strengths={strengths!r}: give a list of numbers") from None
    if not strengths or not all(math.isfinite(s) for s in strengths):
        raise InvalidArgumentError(f"strengths={strengths}: give at least one finite strength (0: no move)")
    if (towards is None) != (away is None):
        raise InvalidArgumentError("give both towards= and away= for a prompt direction (it runs from away to "
                                   "towards), or neither")
    if towards is None and noise_direction is None:
        raise InvalidArgumentError("nothing to move along: give towards= and away= (a prompt direction) and/or "
                                   "noise_direction= (a seed or a noise tensor)")
    prompt, noise = _endpoint(session, start, "start", options)
    if noise_direction is None:
        noise = noise.repeat(len(strengths), 1, 1, 1)
    else:
        direction = _noise_of(session, noise_direction, "noise_direction", options)
        noise = torch.cat([move_noise(noise, direction, s) for s in strengths])
    if towards is not None:
        (embedding,) = _embeddings(session, [prompt], options)
        direction = prompt_direction(session, towards, away, clip_skip=options.get("clip_skip", 1))
        rows = [move_embedding(embedding, direction, s) for s in strengths]
        prompt = Embedding(hidden=torch.cat([r.hidden for r in rows]),
                           pooled=None if rows[0].pooled is None else torch.cat([r.pooled for r in rows]))
    return session.generate(prompt, negative_prompt, noise=noise, batch_size=len(strengths), **options)


def _check_mode(mode, modes, name: str) -> None:
    if mode not in modes:
        raise InvalidArgumentError(f"{name}={mode!r}; choose one of: {', '.join(modes)}")


def _own_batch(options: dict, what: str, batch: str) -> None:
    taken = sorted({"batch_size", "noise"} & set(options))
    if taken:
        raise InvalidArgumentError(f"{what} makes the noise itself, one row per image ({batch} of them); drop "
                                   f"{', '.join(taken)}")


def _one_item(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InvalidArgumentError(f"{name} must be a noise tensor [1, C, h, w], got {type(x).__name__}")
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4 or x.shape[0] != 1:
        raise ShapeError(f"{name} has shape {tuple(x.shape)}; give one noise item [1, C, h, w] or [C, h, w]")
    return x


def _noise_of(session, seed, name: str, options: dict) -> torch.Tensor:
    """The ``[1, C, h, w]`` noise of a seed, or a given noise tensor checked against the image size."""
    dw, dh = session.default_size
    width, height = options.get("width") or dw, options.get("height") or dh
    if isinstance(seed, torch.Tensor):
        noise = _one_item(seed, name)
        expected = (1, *session.latent_shape(width, height))
        if tuple(noise.shape) != expected:
            raise ShapeError(f"{name} has shape {tuple(noise.shape)}, but {width}x{height} needs {expected}; pass "
                             "width= and height= to match it")
        if not torch.isfinite(noise).all():
            raise InvalidArgumentError(f"{name} holds NaN/inf values; give finite unit-variance noise")
        return noise.detach().float().cpu()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgumentError(f"{name} is {type(seed).__name__}; give a seed (int) or a noise tensor "
                                   "[1, C, h, w]")
    return session.noise(seed, width, height)


def _endpoint(session, spec, name: str, options: dict):
    """``(prompt, seed)`` as the prompt (checked) and its noise ``[1, C, h, w]``."""
    if not isinstance(spec, (tuple, list)) or len(spec) != 2:
        raise InvalidArgumentError(f"{name} is {spec!r:.60}; give (prompt, seed): a prompt (str or Embedding) "
                                   "and a seed (int) or a noise tensor [1, C, h, w]")
    prompt, seed = spec
    check_prompt(prompt, f"{name}'s prompt")
    return prompt, _noise_of(session, seed, f"{name}'s noise", options)


def _same_prompt(prompts) -> bool:
    first = prompts[0]
    if isinstance(first, str):
        return all(isinstance(p, str) and p == first for p in prompts)
    return all(isinstance(p, Embedding) and (p is first or (
        p.hidden.shape == first.hidden.shape and torch.equal(p.hidden, first.hidden)
        and (p.pooled is None) == (first.pooled is None)
        and (p.pooled is None or torch.equal(p.pooled, first.pooled)))) for p in prompts)


def _embeddings(session, prompts, options: dict) -> list[Embedding]:
    """Each prompt as an Embedding: text is encoded (weighting syntax included) with the run's clip skip."""
    clip_skip = options.get("clip_skip", 1)
    return [p if isinstance(p, Embedding) else session.encoder.encode(p, clip_skip) for p in prompts]


def _check_embeddings(embeddings) -> None:
    shapes = {tuple(e.hidden.shape) for e in embeddings}
    if len(shapes) != 1:
        raise ShapeError(f"the prompts encode to hidden states of shapes {sorted(shapes)}, which do not blend; a "
                         "prompt over 75 tokens takes another 77-token chunk, so give all prompts as many chunks")
    if len({e.pooled is None for e in embeddings}) != 1:
        raise ShapeError("some embeddings carry a pooled vector and some do not; encode them with one model")


def _repeat(embedding: Embedding, n: int) -> Embedding:
    return Embedding(hidden=embedding.hidden.repeat(n, 1, 1),
                     pooled=None if embedding.pooled is None else embedding.pooled.repeat(n, 1))


def _blend_embeddings(embeddings, weights, mode: str) -> Embedding:
    if mode == "lerp":
        blend = linear_blend
    else:
        def blend(values, w):
            d = values[0].shape[-1]
            return spherical_blend([v.reshape(-1, d) for v in values], w).reshape(values[0].shape)
    hidden = blend([e.hidden for e in embeddings], weights)
    pooled = None if embeddings[0].pooled is None else blend([e.pooled for e in embeddings], weights)
    return Embedding(hidden=hidden, pooled=pooled)


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
