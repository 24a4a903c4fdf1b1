"""The prompt language against AUTOMATIC1111's doctests (modules/prompt_parser.py), ported verbatim."""

import random
import re
import warnings

import lark
import pytest

from difftech_lab.conditioning import prompt_parser
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


@pytest.mark.parametrize("prompt", ["[a:b:0]", "[a:b:-2]", "[a:b: -2 ]", "[a:b:0.0]", "[a:b:-0.5]", "[a:b:0.05]"])
@pytest.mark.parametrize("old", [False, True])
def test_when_below_step_one_shows_the_new_text_from_the_first_step(prompt, old):
    # A1111 adds a switch only for when >= 1 step, and shows `before` while step <= when
    assert prompt_schedules(prompt, 10, use_old_scheduling=old) == [[10, "b"]]
    assert prompt_schedules(prompt.replace("a:", ""), 10, use_old_scheduling=old) == [[10, "b"]]
    assert prompt_schedules(prompt.replace(":b:", "::"), 10, use_old_scheduling=old) == [[10, ""]]


def test_when_too_large_for_an_int_never_switches():
    assert prompt_schedules("[a:b:1e999]", 10) == [[10, "a"]]  # A1111: OverflowError from int(inf)


def test_whitespace_around_when_and_weight():
    assert prompt_schedules("(word: 1.2) [b:c: 2 ]", 10) == [[2, "(word: 1.2) b"], [10, "(word: 1.2) c"]]


@pytest.mark.parametrize("prompt", ["[a:b:2]::", "[a:b:2][[", "([a:b:2]])", "[a:[b:c]:3]"])
def test_group_lark_reads_as_text_stays_text_and_warns(prompt):
    # A1111's grammar reads these as text: a group beside stray brackets or colons, or one holding a malformed
    # group (lark 1.1.2, A1111's pin, and lark 1.3 agree on these)
    with pytest.warns(PromptSyntaxWarning, match="read as plain text"):
        assert prompt_schedules(prompt, 10) == [[10, prompt]]


def test_failure_names_the_pipe_that_no_alternation_takes():
    with pytest.warns(PromptSyntaxWarning, match=r"column 9: '\|' is outside"):
        assert prompt_schedules("[a|b] c | d", 10) == [[10, "[a|b] c | d"]]
    with pytest.raises(PromptSyntaxError, match="column 11: backslash at the end of a line"):
        prompt_schedules("a [b:c:3] \\", 10, strict=True)


def test_prompts_that_cannot_schedule_get_lark_s_answer_without_parsing():
    # no ':' or '|' after the first '[' means no [from:to:when] or [a|b]: the shortcut must agree with lark
    rng = random.Random(3)
    for _ in range(150):
        head = "".join(rng.choice(["a", " ", "(", ")", "]", ":", "|", "\\", "\n", "\\(", "\\|"]) for _ in range(4))
        tail = "".join(rng.choice(["b", " ", "(", ")", "[", "]", "\\", "\\("]) for _ in range(4))
        prompt = head + rng.choice(["", "["]) + tail
        shortcut = prompt_parser._parse(prompt)
        try:
            tree = prompt_parser._grammar().parse(prompt)
        except lark.exceptions.UnexpectedInput as error:
            assert shortcut.failed_at == error.pos_in_stream, prompt
        else:
            assert shortcut.failed_at is None and "".join(prompt_parser._nodes(tree)) == prompt, prompt


def test_repeated_prompt_gives_fresh_lists():
    first = prompt_schedules("a [b:c:3]", 10)
    first[0][1] = "changed"
    assert prompt_schedules("a [b:c:3]", 10) == [[3, "a b"], [10, "a c"]]


# --- weights that are not finite or absurdly large --------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("(red:nan)", "weight nan in '(red:nan)' is not a finite number; use a weight such as 1.2"),
    ("(red:inf)", "weight inf in '(red:inf)' is not a finite number"),
    ("a (red: -Infinity )", "weight -Infinity in '(red: -Infinity )' is not a finite number"),
    (f"(red:{'9' * 400})", f"weight {'9' * 400} in '(red:{'9' * 400})' is not a finite number"),  # float: inf
    ("(red:1e30)", "weight 1e30 in '(red:1e30)' is beyond ±100; use a weight such as 1.2"),
    ("[(red:-101)]", "weight -101 in '(red:-101)' is beyond ±100"),
    ("((red:20):20)", "nested emphasis gives 'red' weight 400, beyond ±100"),
])
def test_absurd_weight_raises(text, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        parse_prompt_attention(text, strict=True)
    with pytest.raises(InvalidArgumentError):
        parse_prompt(f"x AND {text}", 10)


def test_weights_up_to_the_bound_are_kept():
    assert parse_prompt_attention("(red:100) (blue:-100)") == [["red", 100.0], [" ", 1.0], ["blue", -100.0]]


def test_exponent_weight_within_bound_is_text_as_in_a1111_and_warns():
    with pytest.warns(PromptSyntaxWarning, match="column 6: A1111 reads only plain decimals as weights"):
        assert parse_prompt_attention("(red:1e-1)") == [["red:1e-1", 1.1]]


def test_number_without_opening_bracket_is_text():
    with pytest.warns(PromptSyntaxWarning, match="has no matching"):
        assert parse_prompt_attention("red:nan)") == [["red:nan)", 1.0]]


def test_absurd_and_weight_raises():
    with pytest.raises(InvalidArgumentError, match="weight 1000 in 'b:1000' is beyond ±100"):
        split_and("a AND b:1000")


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
