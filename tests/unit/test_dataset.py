"""The procedural dataset: deterministic, its captions parse back, its ground truth agrees with its pixels."""

import numpy as np

from difftech_lab import scenes
from difftech_lab.training import dataset


def test_same_seed_gives_the_same_scene_and_other_seeds_differ():
    a, b, c = dataset.sample(123), dataset.sample(123), dataset.sample(124)
    assert np.array_equal(a.image, b.image) and a.caption == b.caption and a.spec == b.spec
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, c.image)
    images, captions = dataset.batch(7, 5)
    images2, captions2 = dataset.batch(7, 5)
    assert np.array_equal(images, images2) and captions == captions2


def test_captions_parse_back_to_their_specs():
    for seed in range(300):
        s = dataset.sample(seed)
        assert scenes.parse_caption(s.caption) == s.spec
        assert scenes.caption(s.spec) == s.caption


def test_masks_boxes_and_colours_match_the_pixels():
    for seed in range(100):
        s = dataset.sample(seed)
        assert s.masks.shape == (len(s.spec.objects), 64, 64) and s.boxes.shape == (len(s.spec.objects), 4)
        assert not (s.masks.sum(0) > 1).any()  # objects never overlap
        for obj, mask, box in zip(s.spec.objects, s.masks, s.boxes):
            assert (s.image[mask] == scenes.COLOURS[obj.colour]).all()
            ys, xs = np.nonzero(mask)
            assert np.allclose(box * 64, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        background = ~s.masks.any(0)
        assert (s.image[background] == scenes.BACKGROUNDS[s.spec.background]).all()


def test_scenes_have_one_to_three_objects_of_distinct_colours():
    counts = set()
    for seed in range(200):
        spec = dataset.sample(seed).spec
        counts.add(len(spec.objects))
        assert len({o.colour for o in spec.objects}) == len(spec.objects)
    assert counts == {1, 2, 3}


def test_training_never_sees_a_held_out_caption_and_the_evaluation_prompts_are_fixed():
    assert not any(dataset.is_held_out(dataset.sample(seed).caption) for seed in range(500))
    singles, pairs = dataset.held_out_specs(1, 200), dataset.held_out_specs(2, 200)
    assert singles == dataset.held_out_specs(1, 200)
    assert len({scenes.caption(s) for s in singles}) == 200 and all(len(s.objects) == 1 for s in singles)
    assert all(dataset.is_held_out(scenes.caption(s)) for s in singles + pairs)
    assert all(len(s.objects) == 2 for s in pairs)
