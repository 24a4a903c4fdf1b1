"""The adherence scorer (difftech_lab.metrics) against the dataset's ground truth."""

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageFilter

from difftech_lab.errors import InvalidArgumentError, ShapeError
from difftech_lab import metrics, scenes
from difftech_lab.training import dataset


@pytest.fixture(scope="module")
def fresh():
    # Seeds far from any the training stages draw.
    return [dataset.sample(900_000_000 + i) for i in range(300)]


def antialiased(s, k=4):
    """The scene drawn at k× resolution and box-downsampled: every edge pixel blended as a camera would."""
    big = np.empty((64 * k, 64 * k, 3), np.float32)
    big[:] = scenes.BACKGROUNDS[s.spec.background]
    for obj, (cx, cy) in zip(s.spec.objects, s.centres * 64):
        big[scenes.shape_mask(obj.shape, cx * k, cy * k, scenes.SIZES[obj.size] * k, size=(64 * k, 64 * k))] = \
            scenes.COLOURS[obj.colour]
    return big.reshape(64, k, 64, k, 3).mean((1, 3)).round().astype(np.uint8)


def blurred(image, sigma=1.0):
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))


@pytest.mark.parametrize("n_objects", [1, 2, 3])
@pytest.mark.parametrize("render", ["hard", "antialiased", "blurred"])
def test_strict_score_agrees_with_the_ground_truth_on_fresh_scenes(n_objects, render):
    samples = [dataset.sample(800_000_000 + 1000 * n_objects + i, n_objects, training=False) for i in range(120)]
    draw = {"hard": lambda s: s.image, "antialiased": antialiased, "blurred": lambda s: blurred(antialiased(s))}[render]
    rates = metrics.score_batch([draw(s) for s in samples], [s.spec for s in samples])
    assert rates == {"n": 120, "size": 1.0, "colour": 1.0, "shape": 1.0, "position": 1.0, "object": 1.0,
                     "count": 1.0, "background": 1.0, "strict": 1.0, "lenient": 1.0}


def test_size_is_read_with_a_wide_margin_on_blended_edges():
    """Every object's area lies at least 1.4× away from its shape's big/small threshold, whatever the edges."""
    for i in range(200):
        s = dataset.sample(700_000_000 + i, training=False)
        for image in (s.image, antialiased(s), blurred(antialiased(s))):
            for det in metrics.detect(image)[1]:
                ratio = det.area / metrics.adherence._size_thresholds()[det.shape]
                assert ratio > 1.4 or ratio < 1 / 1.4, (s.caption, det)


def test_strict_catches_what_lenient_forgives():
    big_red = dataset.render(scenes.SceneSpec((scenes.ObjectSpec("big", "red", "circle", "left"),), "white"))
    stray = dataset.render(scenes.SceneSpec((scenes.ObjectSpec("small", "red", "circle", "left"),
                                             scenes.ObjectSpec("big", "blue", "star", "right")), "white"))
    prompt = "a big red circle on the left on a white background"
    assert metrics.score(big_red.image, prompt).correct
    wrong = metrics.score(stray.image, prompt)  # small instead of big, plus a stray star
    assert wrong.lenient and not wrong.correct and not wrong.count and wrong.objects[0].size is False
    assert metrics.score(stray.image, "a red circle on the left and a star").correct  # size left open


def test_attributes_a_prompt_leaves_open_are_not_scored():
    s = dataset.render(scenes.SceneSpec((scenes.ObjectSpec("small", "green", "triangle", "top"),), "black"))
    result = metrics.score(s.image, "green shape")
    assert result.correct and result.background is None
    assert [result.objects[0].size, result.objects[0].shape, result.objects[0].position] == [None, None, None]
    assert not metrics.score(s.image, "green shape, bottom").correct


def test_two_objects_where_the_prompt_names_one_fail_the_count():
    two = dataset.render(scenes.SceneSpec((scenes.ObjectSpec("big", "red", "circle", "left"),
                                           scenes.ObjectSpec("small", "red", "circle", "right")), "white"))
    result = metrics.score(two.image, "a red circle on the left on a white background")
    assert result.lenient and not result.count and not result.correct


def test_detections_report_the_true_attributes(fresh):
    for s in fresh[:50]:
        background, found = metrics.detect(s.image)
        assert background == s.spec.background
        truth = {(o.size, o.colour, o.shape, o.position) for o in s.spec.objects}
        assert {(d.size, d.colour, d.shape, d.position) for d in found} == truth


def test_a_wrong_prompt_is_caught_attribute_by_attribute():
    s = dataset.sample(31, n_objects=1)
    obj = s.spec.objects[0]
    other = lambda values, v: next(x for x in values if x != v)
    for field, values in (("size", scenes.SIZES), ("colour", scenes.COLOURS), ("shape", scenes.SHAPES),
                          ("position", scenes.POSITIONS)):
        wrong = dataclasses.replace(obj, **{field: other(list(values), getattr(obj, field))})
        result = metrics.score(s.image, scenes.SceneSpec((wrong,), s.spec.background)).objects[0]
        assert getattr(result, field) is False
        assert all(getattr(result, f) for f in ("size", "colour", "shape", "position") if f != field)
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
    assert metrics.score_batch(images, prompts) == {"n": 10, "size": 1.0, "colour": 1.0, "shape": 1.0,
                                                    "position": 1.0, "object": 1.0, "count": 1.0, "background": 1.0,
                                                    "strict": 1.0, "lenient": 1.0}
    swapped = prompts[1:] + prompts[:1]  # every image scored against another scene's prompt
    assert metrics.score_batch(images, swapped)["strict"] < 0.5
    with pytest.raises(InvalidArgumentError):
        metrics.score_batch(images, prompts[:3])


def test_bad_inputs_are_refused():
    with pytest.raises(ShapeError):
        metrics.score(np.zeros((64, 64)), "a big red circle on the left on a white background")
    with pytest.raises(InvalidArgumentError):
        metrics.score(np.zeros((64, 64, 3), np.uint8), 42)


def test_palette_error_is_zero_on_the_world_and_grows_off_it():
    s = dataset.sample(12, training=False)
    washed = (s.image.astype(np.float32) * 0.6 + 128 * 0.4).astype(np.uint8)
    exact, off = metrics.palette_error([s.image, washed])
    assert exact == 0.0 and off > 0.05
