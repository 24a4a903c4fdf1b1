"""The prompt language against AUTOMATIC1111's doctests (modules/prompt_parser.py), ported verbatim."""

import warnings

import pytest

from difftech_lab.conditioning.prompt_parser import (
    ParsedPrompt, PromptTerm, parse_prompt, parse_prompt_attention, prompt_schedules, split_and,
)
from difftech_lab.errors import InvalidArgumentError, PromptSyntaxError, PromptSyntaxWarning


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptSyntaxWarning)
        return fn(*args, **kwargs)


# --- parse_prompt_attention doctests --------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", 0.55],
      [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]]),
])
def test_attention_doctests(text, expected):
    assert quiet(parse_prompt_attention, text) == expected


def test_attention_break_and_escapes():
    assert parse_prompt_attention("a BREAK b") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]
    assert parse_prompt_attention("\\\\ (a: 2 )") == [["\\ ", 1.0], ["a", 2.0]]
    assert parse_prompt_attention("") == [["", 1.0]]
    assert parse_prompt_attention("[a]") == [["a", 1 / 1.1]]


def test_attention_unclosed_bracket_warns_with_column():
    with pytest.warns(PromptSyntaxWarning, match=r"column 3: '\(' is never closed"):
        assert parse_prompt_attention("a (b") == [["a ", 1.0], ["b", 1.1]]
    with pytest.raises(PromptSyntaxError, match="column 3"):
        parse_prompt_attention("a (b", strict=True)


def test_attention_stray_closer_is_literal_and_warns():
    with pytest.warns(PromptSyntaxWarning, match=r"column 2: '\]' has no matching '\['"):
        assert parse_prompt_attention("a] b") == [["a] b", 1.0]]
    with pytest.warns(PromptSyntaxWarning, match="column 2"):
        assert parse_prompt_attention("a:1.5) b") == [["a:1.5) b", 1.0]]


def test_attention_backslash_escaping_nothing_is_dropped_and_warns():
    with pytest.warns(PromptSyntaxWarning, match="column 2: backslash escapes nothing"):
        assert parse_prompt_attention("a\\b") == [["ab", 1.0]]


def test_attention_bad_weight_number_raises():
    with pytest.raises(PromptSyntaxError, match="'1.2.3' is not a number"):
        parse_prompt_attention("(a:1.2.3)")


def test_well_formed_prompt_emits_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_prompt("a (b:1.2) [c] [d:e:0.5] [f|g] \\(h\\) AND i:0.5", 10)


# --- get_learned_conditioning_prompt_schedules doctests ---------------------------------------------------

def g(prompt):
    return quiet(prompt_schedules, prompt, 10)


@pytest.mark.parametrize("prompt, expected", [
    ("test", [[10, "test"]]),
    ("a [b:3]", [[3, "a "], [10, "a b"]]),
    ("a [b: 3]", [[3, "a "], [10, "a b"]]),
    ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
    ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
    ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
    ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
    ("a [unbalanced", [[10, "a [unbalanced"]]),
    ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
    ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[a|(b:1.1)]", [[1, "a"], [2, "(b:1.1)"], [3, "a"], [4, "(b:1.1)"], [5, "a"], [6, "(b:1.1)"], [7, "a"],
                     [8, "(b:1.1)"], [9, "a"], [10, "(b:1.1)"]]),
    ("[fe|]male", [[1, "female"], [2, "male"], [3, "female"], [4, "male"], [5, "female"], [6, "male"],
                   [7, "female"], [8, "male"], [9, "female"], [10, "male"]]),
    ("[fe|||]male", [[1, "female"], [2, "male"], [3, "male"], [4, "male"], [5, "female"], [6, "male"],
                     [7, "male"], [8, "male"], [9, "female"], [10, "male"]]),
])
def test_schedule_doctests(prompt, expected):
    assert g(prompt) == expected


def test_schedule_doctest_marked_not_handled():
    # A1111's doctest says "not handling this right now" and lists [[5,'a  c'],[10,'a {b|d{ c']]; its current
    # grammar keeps "|" out of plain text, so the parse fails and A1111 returns the prompt verbatim.
    with pytest.warns(PromptSyntaxWarning, match=r"column 6: '\|' is outside"):
        assert prompt_schedules("a [{b|d{:.5] c", 10) == [[10, "a [{b|d{:.5] c"]]


def test_schedule_comment_example():
    prompt = ("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
              "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]")
    assert prompt_schedules(prompt, 100) == [
        [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
        [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
        [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
        [75, "fantasy landscape with a lake and an oak in background masterful"],
        [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
    ]


def test_decimal_point_means_fraction_unless_old_scheduling():
    assert prompt_schedules("a [b:1.5] c", 10) == [[10, "a  c"]]  # 1.5 × 10 steps, capped at 10
    assert prompt_schedules("a [b:1.5] c", 10, use_old_scheduling=True) == [[1, "a  c"], [10, "a b c"]]
    assert prompt_schedules("[a:b:0]", 10) == [[10, "b"]]
    assert prompt_schedules("[a:b:20]", 10) == [[10, "a"]]


def test_pipe_outside_alternation_uses_prompt_verbatim_and_warns():
    with pytest.warns(PromptSyntaxWarning, match="column 2"):
        assert prompt_schedules("a|[b:3]", 10) == [[10, "a|[b:3]"]]
    with pytest.raises(PromptSyntaxError, match="column 2"):
        prompt_schedules("a|b", 10, strict=True)


def test_malformed_edit_is_literal_and_warns():
    with pytest.warns(PromptSyntaxWarning, match="column 3: prompt editing needs a number of steps last"):
        assert prompt_schedules("a [b:c]", 10) == [[10, "a [b:c]"]]


def test_steps_must_be_positive():
    with pytest.raises(InvalidArgumentError, match="steps=0"):
        prompt_schedules("a", 0)


# --- AND and the structured result -------------------------------------------------------------------------

def test_split_and_weights():
    assert split_and("a cat AND a dog:0.5 AND  x :-1.5") == [("a cat", 1.0), (" a dog", 0.5), ("  x", -1.5)]
    assert split_and("ANDROID") == [("ANDROID", 1.0)]
    assert split_and("(a:1.2)") == [("(a:1.2)", 1.0)]


def test_parse_prompt_structure():
    parsed = parse_prompt("a [b:c:0.5] AND d:2", 4)
    assert parsed == ParsedPrompt("a [b:c:0.5] AND d:2", 4, [
        PromptTerm("a [b:c:0.5]", 1.0, [(2, "a b"), (4, "a c")]),
        PromptTerm(" d", 2.0, [(4, " d")]),
    ])
    assert parsed.texts() == ["a b", "a c", " d"]


def test_parse_prompt_reports_columns_in_the_whole_prompt():
    with pytest.raises(PromptSyntaxError, match="column 11:"):
        parse_prompt("a cat AND (dog", 10, strict=True)


def test_negative_style_parse_keeps_and():
    parsed = parse_prompt("a AND b", 10, and_split=False)
    assert [t.text for t in parsed.terms] == ["a AND b"]
