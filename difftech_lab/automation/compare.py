"""Measured comparisons: several settings over the same prompts and seeds, scored, as one table.

Every variant sees the same (prompt, seed) pairs, so differences between rows are paired, not luck of the draw.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..errors import InvalidArgumentError
from ..metrics import score


@dataclass
class Row:
    """One variant: its name, mean NFE per image, and each metric's mean and standard error over n images."""

    name: str
    n: int
    nfe: float
    metrics: dict[str, tuple[float, float]]
    seconds: float = float("nan")  # mean wall time per image (generation and decoding)


@dataclass
class Comparison:
    """The table of a comparison; ``str()`` prints it aligned, with ± one standard error."""

    rows: list[Row]
    metric_names: list[str]
    results: dict = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        header = ["variant", "n", "NFE", *self.metric_names]
        lines = [header]
        for row in self.rows:
            cells = [row.name, str(row.n), f"{row.nfe:g}"]
            cells += [_cell(*row.metrics[m]) for m in self.metric_names]
            lines.append(cells)
        return _aligned(lines)

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))

    def timing(self) -> str:
        """Wall time per image of each row and its ratio to the first row (machine-dependent, unlike the table)."""
        first = self.rows[0].seconds
        return "\n".join(f"{row.name}: {row.seconds * 1000:.0f} ms per image, ×{row.seconds / first:.2f}"
                         for row in self.rows)

    def best(self, metric: str) -> Row:
        return max(self.rows, key=lambda row: row.metrics[metric][0])


def _aligned(lines: list[list[str]]) -> str:
    """A header and rows of cells as left-aligned columns, with a rule under the header."""
    widths = [max(len(line[k]) for line in lines) for k in range(len(lines[0]))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def _cell(mean: float, se: float) -> str:
    """Mean ± standard error to the standard error's first significant digits (two decimals for rates)."""
    if not np.isfinite(mean):
        return "–"
    if abs(mean) >= 0.1 or mean == 0:
        return f"{mean:.2f} ± {se:.2f}"
    digits = max(2, -int(np.floor(np.log10(se)))) if se > 0 else 3
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def adherence(images, prompts) -> dict[str, list[float]]:
    """Per-image adherence on the bundled model's world: the strict verdict (count and every named attribute
    right), the lenient one, the count, and per attribute the share of named objects right (NaN where the prompt
    names it for no object, e.g. no size; the table's mean skips those)."""
    scores = [score(image, prompt) for image, prompt in zip(images, prompts)]

    def share(s, attribute):
        named = [getattr(o, attribute) for o in s.objects if getattr(o, attribute) is not None]
        return float(np.mean(named)) if named else float("nan")

    out = {"strict": [float(s.correct) for s in scores], "lenient": [float(s.lenient) for s in scores],
           "count": [float(s.count) for s in scores]}
    out.update({a: [share(s, a) for s in scores] for a in ("size", "colour", "shape", "position")})
    out["background"] = [float("nan") if s.background is None else float(s.background) for s in scores]
    return out


def _mean_and_se(values) -> tuple[float, float]:
    """Mean and standard error over the values that are defined (NaN: not measured for that image)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def compare(session, prompts: list[str], variants: dict[str, dict], *, seeds=(0,), metric=adherence,
            progress: bool = True, **common) -> Comparison:
    """Generate every prompt × seed under each variant's ``generate`` options and score the images.

    ``metric(images, prompts) -> {name: [value per image]}``; the default scores adherence on the bundled
    model's grammar. A variant's ``"patches"`` entry (e.g. ``{"pag": 3.0}``) runs it inside
    ``session.patched(**patches)``. Seeds run as one batch per prompt (image k uses seed ``seeds[0] + k``). ``progress``
    shows one bar over variants × prompts (in a notebook a widget that disappears when done) in place of
    each generation's own bar.
    """
    if not prompts or not variants:
        raise InvalidArgumentError("compare needs at least one prompt and one variant")
    seeds = list(seeds)
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise InvalidArgumentError(f"seeds {seeds} must be consecutive (they run as one batch per prompt)")
    rows, names, results = [], None, {}
    with tqdm(total=len(variants) * len(prompts), desc="compare", unit="run", leave=False,
              disable=not progress) as bar:
        for name, options in variants.items():
            options = dict(options)
            patches = options.pop("patches", None) or {}
            images, used, nfe, seconds = [], [], [], []
            with session.patched(**patches) if patches else nullcontext():
                for prompt in prompts:
                    bar.set_postfix_str(name, refresh=False)
                    result = session.generate(prompt, **{**common, **options, "seed": seeds[0],
                                                         "batch_size": len(seeds), "progress": False})
                    bar.update()
                    images += result.images
                    used += [prompt] * len(result.images)
                    nfe.append(result.nfe)
                    seconds.append(result.timings.get("total", float("nan")) / len(result.images))
                    results.setdefault(name, []).append(result)
            values = metric(images, used)
            names = names or list(values)
            stats = {m: _mean_and_se(v) for m, v in values.items()}
            rows.append(Row(name=name, n=len(images), nfe=float(np.mean(nfe)), metrics=stats,
                            seconds=float(np.mean(seconds))))
    return Comparison(rows=rows, metric_names=names, results=results)


def compare_calls(session, cases: list, methods: dict, *, metric, progress: bool = True) -> Comparison:
    """Each method on every case, scored: for techniques that take more than a prompt (regions, boxes, images).

    ``methods`` maps a name to ``method(session, case, index) -> Result`` (index: the case's position, e.g. for its
    seed); ``metric(image, case) -> {name: value}`` scores each image. Every method sees the same cases.
    """
    if not cases or not methods:
        raise InvalidArgumentError("compare_calls needs at least one case and one method")
    rows, names, results = [], None, {}
    with tqdm(total=len(methods) * len(cases), desc="compare", unit="run", leave=False, disable=not progress) as bar:
        for name, method in methods.items():
            values: dict[str, list[float]] = {}
            nfe, seconds = [], []
            for index, case in enumerate(cases):
                result = method(session, case, index)
                bar.update()
                for image in result.images:
                    for key, value in metric(image, case).items():
                        values.setdefault(key, []).append(float(value))
                nfe.append(result.nfe)
                seconds.append(result.timings.get("total", float("nan")) / len(result.images))
                results.setdefault(name, []).append(result)
            names = names or list(values)
            rows.append(Row(name=name, n=len(next(iter(values.values()))), nfe=float(np.mean(nfe)),
                            metrics={m: _mean_and_se(v) for m, v in values.items()}, seconds=float(np.mean(seconds))))
    return Comparison(rows=rows, metric_names=names, results=results)


def side_by_side(tables: dict[str, Comparison], metric: str) -> str:
    """One metric of several comparisons with the same rows, one column per comparison, with each row's NFE per
    image (its range where the comparisons differ, e.g. a pass per region)."""
    first = next(iter(tables.values()))
    header = ["method", "NFE", *tables]
    lines = [header]
    for k, row in enumerate(first.rows):
        nfe = [t.rows[k].nfe for t in tables.values()]
        spread = f"{min(nfe):.0f}" if max(nfe) - min(nfe) < 0.5 else f"{min(nfe):.0f}–{max(nfe):.0f}"
        lines.append([row.name, spread, *(_cell(*t.rows[k].metrics[metric]) for t in tables.values())])
    return _aligned(lines)
