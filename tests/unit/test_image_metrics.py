"""Image statistics against closed-form cases."""

import numpy as np
import pytest

from difftech_lab import metrics


def flat(value, rgb=None):
    image = np.zeros((64, 64, 3), np.uint8)
    image[:] = rgb if rgb is not None else value
    return image


def test_sharpness_of_a_step_edge_is_one_over_the_width():
    edge = flat(0)
    edge[:, 32:] = 255  # luminance 0 → 1: central differences give ½ in the two columns beside the edge
    assert metrics.sharpness([flat(128), edge]) == pytest.approx([0.0, 1 / 64], abs=1e-6)


def test_clipped_fraction_saturation_brightness_change():
    black, grey, red, white = flat(0), flat(128), flat(0, (255, 0, 0)), flat(255)
    assert metrics.clipped_fraction([black, grey, red]) == [1.0, 0.0, 1.0]
    assert metrics.saturation([grey, red, black]) == [0.0, 1.0, 0.0]
    assert metrics.brightness([white, black]) == pytest.approx([1.0, 0.0])
    assert metrics.change(grey, grey) == 0.0 and metrics.change(black, white) == pytest.approx(1.0)
    half = black.copy()
    half[:, :32] = 255
    left = np.zeros((64, 64), bool)
    left[:, :32] = True
    assert metrics.change(black, half, left) == pytest.approx(1.0) and metrics.change(black, half, ~left) == 0.0
