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


def test_captions_parse_back_to_what_they_name():
    free = 0
    for seed in range(300):
        s = dataset.sample(seed)
        assert scenes.parse_caption(s.caption) == s.named
        free += s.caption != scenes.caption(s.spec)
        canonical = dataset.sample(seed, training=False)
        assert canonical.caption == scenes.caption(canonical.spec) and canonical.named == canonical.spec
    assert 100 < free < 200  # training mixes free phrasing and canonical captions about half and half


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


def test_training_never_sees_a_held_out_scene_in_any_order_and_the_evaluation_scenes_are_fixed():
    assert not any(dataset.is_held_out(dataset.sample(seed).spec) for seed in range(500))
    singles, pairs, triples = (dataset.held_out_specs(n, 200) for n in (1, 2, 3))
    assert singles == dataset.held_out_specs(1, 200)
    assert len({scenes.scene_key(s) for s in singles}) == 200 and all(len(s.objects) == 1 for s in singles)
    assert all(dataset.is_held_out(s) for s in singles + pairs + triples)
    for s in pairs + triples:  # the same scene listed in another order is held out too
        reordered = scenes.SceneSpec(s.objects[::-1], s.background)
        assert dataset.is_held_out(reordered) and dataset.is_held_out(scenes.caption(reordered))
    assert all(len(s.objects) == 2 for s in pairs) and all(len(s.objects) == 3 for s in triples)
    free = dataset.held_out_free_prompts(1, 200)
    assert [scenes.parse_caption(t) for t, _ in free] == [named for _, named in free]


def test_a_scene_is_held_out_about_one_time_in_eight():
    rng = np.random.default_rng(0)
    rate = np.mean([dataset.is_held_out(dataset.random_spec(rng)) for _ in range(4000)])
    assert abs(rate - 1 / dataset.HELD_OUT_MODULUS) < 0.02


def test_free_layouts_are_deterministic_apart_scored_right_and_say_what_their_boxes_hold():
    from difftech_lab import metrics

    counts = []
    for seed in range(60):
        s = dataset.layout_sample(seed)
        again = dataset.layout_sample(seed)
        assert np.array_equal(s.image, again.image) and s.caption == again.caption
        n = len(s.spec.objects)
        counts.append(n)
        assert len(s.phrases) == n == len(s.boxes) and s.spec.complete
        assert ((0 <= s.boxes) & (s.boxes <= 1)).all()
        for a, b in zip(s.boxes, s.boxes[1:]):  # boxes never overlap
            assert any(b2 <= a1 or a2 <= b1 for a1, a2, b1, b2 in
                       ((a[0], a[2], b[0], b[2]), (a[1], a[3], b[1], b[3])))
        for obj, text in zip(s.spec.objects, s.phrases):  # a phrase says what, never where
            assert obj.colour in text and obj.shape in text and "the" not in text.split()
        assert scenes.parse_caption(s.caption).objects[0].colour == s.spec.objects[0].colour
        # the strict scorer reads the truth right (positions aside: free places straddle the cell borders)
        unplaced = scenes.SceneSpec(tuple(scenes.ObjectSpec(o.size, o.colour, o.shape, None) for o in s.spec.objects),
                                    s.spec.background)
        assert metrics.score(s.image, unplaced).correct
    assert set(counts) == {1, 2, 3, 4}
