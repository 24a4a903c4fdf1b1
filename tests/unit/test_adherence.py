"""The adherence scorer (difftech_lab.metrics) against the dataset's ground truth."""

import dataclasses

import numpy as np
import pytest

from difftech_lab.errors import InvalidArgumentError, ShapeError
from difftech_lab import metrics, scenes
from difftech_lab.training import dataset


@pytest.fixture(scope="module")
def fresh():
    # Seeds far from any the training stages draw.
    return [dataset.sample(900_000_000 + i) for i in range(300)]


def test_agrees_with_the_ground_truth_on_fresh_scenes(fresh):
    scores = [metrics.score(s.image, s.spec) for s in fresh]
    objects = [o for sc in scores for o in sc.objects]
    rate = {k: np.mean([getattr(o, k) for o in objects]) for k in ("colour", "shape", "position")}
    assert rate["colour"] >= 0.99 and rate["position"] >= 0.99 and rate["shape"] >= 0.97, rate
    assert np.mean([sc.background for sc in scores]) >= 0.99


def test_detections_report_the_true_attributes(fresh):
    for s in fresh[:50]:
        background, found = metrics.detect(s.image)
        assert background == s.spec.background
        truth = {(o.colour, o.shape, o.position) for o in s.spec.objects}
        assert {(d.colour, d.shape, d.position) for d in found} == truth


def test_a_wrong_prompt_is_caught_attribute_by_attribute():
    s = dataset.sample(31, n_objects=1)
    obj = s.spec.objects[0]
    other = lambda values, v: next(x for x in values if x != v)
    for field, values in (("colour", scenes.COLOURS), ("shape", scenes.SHAPES), ("position", scenes.POSITIONS)):
        wrong = dataclasses.replace(obj, **{field: other(list(values), getattr(obj, field))})
        result = metrics.score(s.image, scenes.SceneSpec((wrong,), s.spec.background)).objects[0]
        assert not getattr(result, field)
        assert all(getattr(result, f) for f in ("colour", "shape", "position") if f != field)
    wrong_bg = other(list(scenes.BACKGROUNDS), s.spec.background)
    assert not metrics.score(s.image, scenes.SceneSpec(s.spec.objects, wrong_bg)).background


def test_a_blank_image_has_no_objects_right():
    image = np.full((64, 64, 3), 255, np.uint8)
    result = metrics.score(image, "a big red circle on the left on a white background")
    assert result.background and not any([result.objects[0].colour, result.objects[0].shape, result.objects[0].position])


def test_float_images_and_other_sizes_are_read_like_uint8(fresh):
    s = next(x for x in fresh if len(x.spec.objects) == 2)
    assert metrics.score(s.image / 255.0, s.caption).correct
    wide = np.concatenate([s.image, s.image], axis=1)  # 64×128: both copies land in the same grid cells per half
    assert metrics.detect(wide)[0] == s.spec.background


def test_score_batch_rates():
    samples = [dataset.sample(950_000_000 + i, n_objects=2) for i in range(10)]
    images = [s.image for s in samples]
    prompts = [s.caption for s in samples]
    assert metrics.score_batch(images, prompts) == {"n": 10, "colour": 1.0, "shape": 1.0, "position": 1.0,
                                                    "object": 1.0, "background": 1.0, "all": 1.0}
    swapped = prompts[1:] + prompts[:1]  # every image scored against another scene's prompt
    assert metrics.score_batch(images, swapped)["all"] < 0.5
    with pytest.raises(InvalidArgumentError):
        metrics.score_batch(images, prompts[:3])


def test_bad_inputs_are_refused():
    with pytest.raises(ShapeError):
        metrics.score(np.zeros((64, 64)), "a big red circle on the left on a white background")
    with pytest.raises(InvalidArgumentError):
        metrics.score(np.zeros((64, 64, 3), np.uint8), 42)
