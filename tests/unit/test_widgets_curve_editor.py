"""CurveEditor's Python side: piecewise-linear values, keyframe validation, step-count changes."""

import pytest

from difftech_lab.errors import InvalidArgumentError
from difftech_lab.sampling.curves import curve_values
from difftech_lab.widgets.curve_editor import CurveEditor


def test_values_are_piecewise_linear_and_constant_outside_keyframes():
    editor = CurveEditor(steps=7, value_range=(0, 10), keyframes=[(1, 2.0), (3, 6.0), (5, 4.0)])
    assert editor.values == [2.0, 2.0, 4.0, 6.0, 5.0, 4.0, 4.0]
    assert curve_values(editor.values, 7) == editor.values      # usable wherever a Curve is


def test_default_is_flat_at_the_middle_of_the_range():
    editor = CurveEditor(steps=4, value_range=(0, 15))
    assert editor.values == [7.5] * 4


def test_keyframes_from_the_browser_are_sorted_and_deduplicated():
    editor = CurveEditor(steps=5, value_range=(0, 10))
    editor.set_state({"keyframes": [[4, 1.0], [0, 3.0], [4, 2.0]]})
    assert editor.keyframes == [(0, 3.0), (4, 2.0)]


@pytest.mark.parametrize("keyframes, match", [
    ([(0, 11.0)], "outside value_range"),
    ([(5, 1.0)], r"\[0, 4\]"),
    ([(1.5, 1.0)], "integer"),
    ([], "at least one"),
])
def test_bad_keyframes_are_refused(keyframes, match):
    with pytest.raises(InvalidArgumentError, match=match):
        CurveEditor(steps=5, value_range=(0, 10), keyframes=keyframes)


def test_bad_construction_arguments():
    with pytest.raises(InvalidArgumentError, match="value_range"):
        CurveEditor(value_range=(5, 5))
    with pytest.raises(InvalidArgumentError, match="steps"):
        CurveEditor(steps=0)


def test_changing_steps_keeps_keyframes_at_the_same_fraction():
    editor = CurveEditor(steps=11, value_range=(0, 10), keyframes=[(0, 1.0), (5, 9.0), (10, 1.0)])
    editor.steps = 21
    assert editor.keyframes == [(0, 1.0), (10, 9.0), (20, 1.0)]
    assert len(editor.values) == 21 and editor.values[10] == 9.0


def test_repr_is_stable():
    assert repr(CurveEditor(steps=3)) == "CurveEditor(steps=3, 2 keyframes)"


def test_values_for_resamples_the_curve_to_another_step_count():
    editor = CurveEditor(steps=5, value_range=(0, 10), keyframes=[(0, 1.0), (2, 9.0), (4, 1.0)])
    assert editor.values_for(5) == editor.values
    assert editor.values_for(9) == [1.0, 3.0, 5.0, 7.0, 9.0, 7.0, 5.0, 3.0, 1.0]   # same fractions of the run
    assert editor.values_for(1) == [1.0] and editor.steps == 5
    assert curve_values(editor.values_for(30), 30) == editor.values_for(30)
    with pytest.raises(InvalidArgumentError, match="steps"):
        editor.values_for(0)


def test_label_names_the_value():
    assert CurveEditor(label="cfg").label == "cfg"
    assert CurveEditor().label == "value"
