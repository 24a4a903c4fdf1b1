"""Best-of-N: the choice is the argmax of the scores of the batch it names, it replays without the scorer, and
n = 1 is plain generation."""

import numpy as np
import pytest
import torch

from difftech_lab.errors import InvalidArgumentError
from difftech_lab.metrics import adherence_value

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RUN = dict(seed=5, steps=3, width=32, height=32, progress=False)


def brightness(image, prompt):
    return float(np.asarray(image).mean())


def test_the_best_candidate_of_the_named_batch_is_returned_and_replays(tiny_session):
    best = tiny_session.best_of("a star", n=4, scorer=brightness, **RUN)
    batch = tiny_session.generate("a star", batch_size=4, **RUN)  # the same candidates, independently
    scores = [brightness(im, "a star") for im in batch.images]
    assert best.recipe.params["scores"] == pytest.approx(scores)
    k = int(np.argmax(scores))
    assert best.recipe.params["chosen"] == k and torch.equal(best.latents, batch.latents[k:k + 1])
    assert best.recipe.params["scorer"] == "brightness" and best.nfe == 4 * batch.nfe  # all four candidates
    again = tiny_session.run(best.recipe)  # no scorer needed: the recorded choice is replayed
    assert torch.equal(again.latents, best.latents) and again.recipe.params == best.recipe.params


def test_one_candidate_is_plain_generation(tiny_session):
    one = tiny_session.best_of("a star", n=1, scorer=brightness, **RUN)
    assert torch.equal(one.latents, tiny_session.generate("a star", **RUN).latents)


def test_the_graded_adherence_is_one_exactly_when_strict_is_right():
    from difftech_lab import metrics, scenes
    from difftech_lab.training import dataset

    s = dataset.render(scenes.SceneSpec((scenes.ObjectSpec("big", "red", "circle", "left"),), "white"))
    assert adherence_value(s.image, "a big red circle on the left on a white background") == 1.0
    half = adherence_value(s.image, "a small blue circle on the left on a white background")
    assert 0 < half < 1 and not metrics.score(s.image, "a small blue circle on the left").correct


@pytest.mark.parametrize("options, match", [({"n": 0}, "n=0"), ({"n": 2.5}, "whole number"),
                                             ({"batch_size": 2}, "batch_size"), ({"scorer": "beauty"}, "scorer")])
def test_bad_input_is_refused(tiny_session, options, match):
    with pytest.raises(InvalidArgumentError, match=match):
        tiny_session.best_of("a star", **{**RUN, **options})


def test_resampling_keeps_the_better_half_costs_what_best_of_costs_and_replays(tiny_session):
    options = dict(RUN, steps=6, sampler="euler_ancestral")
    plain = tiny_session.best_of("a star", n=4, scorer=brightness, **options)
    particles = tiny_session.best_of("a star", n=4, scorer=brightness, resample_at=[3], **options)
    (copies,) = particles.recipe.params["resampled"]
    assert sorted(set(copies)) == sorted(set(copies[:2])) and len(set(copies)) == 2  # the better half, twice each
    assert particles.nfe == plain.nfe  # network evaluations: the same budget
    # the kept particles are the brightest x̂0 at the last step before the resampling
    segment = tiny_session.generate("a star", batch_size=4, keep_trajectory=True, **options)
    x0 = tiny_session.decode(segment.trajectory[2].denoised)
    ranked = sorted(range(4), key=lambda i: (-brightness(x0[i], ""), i))
    assert set(copies) == set(ranked[:2])
    again = tiny_session.run(particles.recipe)
    assert torch.equal(again.latents, particles.latents)


def test_resample_steps_must_lie_inside_the_run(tiny_session):
    with pytest.raises(InvalidArgumentError, match="resample_at"):
        tiny_session.best_of("a star", n=2, resample_at=[3], **RUN)  # RUN has 3 steps: 1 or 2 only
