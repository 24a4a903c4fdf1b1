"""The prompt language of AUTOMATIC1111's stable-diffusion-webui (``modules/prompt_parser.py``).

Three layers, applied in A1111's order:

1. ``split_and``: composable-diffusion terms ``a cat AND a dog:0.5`` (Liu et al. 2022).
2. ``prompt_schedules``: prompt editing ``[from:to:when]`` and alternation ``[a|b]`` turn one term into
   ``[[until_step, text], ...]``.
3. ``parse_prompt_attention``: emphasis ``(x)``, ``[x]``, ``(x:w)`` and ``BREAK`` turn one scheduled text
   into ``[[fragment, weight], ...]`` for the encoder.

Outputs equal A1111's for the same input, malformed input included. Where A1111 silently reads malformed
syntax in some way, we read it the same way and also emit a ``PromptSyntaxWarning`` naming the 1-based
column (``strict=True`` raises ``PromptSyntaxError`` instead).

A1111 parses scheduling with an ambiguous Earley grammar (lark). We parse the same language by recursive
descent and agree with it on all of its doctests and on prompts whose brackets balance. Where a valid
``[...]`` group touches stray top-level brackets or ``::``, lark sometimes reads the group as literal text;
we read it as a group (such prompts get a syntax warning in most cases).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

from difftech_lab.errors import InvalidArgumentError, PromptSyntaxError, PromptSyntaxWarning

__all__ = [
    "ParsedPrompt",
    "PromptTerm",
    "parse_prompt",
    "parse_prompt_attention",
    "prompt_schedules",
    "split_and",
]


class _Report:
    """Sends syntax problems to warnings, or raises on the first one when strict."""

    def __init__(self, strict: bool, offset: int = 0):
        self.strict, self.offset = strict, offset

    def problem(self, index: int, message: str) -> None:
        text = f"column {index + 1 + self.offset}: {message}"
        if self.strict:
            raise PromptSyntaxError(text)
        warnings.warn(text, PromptSyntaxWarning, stacklevel=4)


# ---------------------------------------------------------------------------------------------------------
# Emphasis: (x) ×1.1, [x] ×1/1.1, (x:w) ×w, escapes, BREAK
# ---------------------------------------------------------------------------------------------------------

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1  # A1111 multiplies by 1/1.1 rather than dividing; the last bits differ

_ATTENTION_TOKEN = re.compile(
    r"""
    \\[()\[\]\\]              # escaped bracket or backslash
    | \\                      # a backslash escaping nothing: A1111 drops it
    | \( | \[
    | :\s*([+-]?[.\d]+)\s*\)  # closing an explicit weight (x:1.3)
    | \) | \]
    | [^\\()\[\]:]+           # plain text
    | :
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text: str, strict: bool = False) -> list[list]:
    """A1111 emphasis: ``[[fragment, weight], ...]``, with ``["BREAK", -1]`` for each chunk break."""
    return _attention(text, _Report(strict))


def _attention(text: str, report: _Report) -> list[list]:
    res: list[list] = []
    round_open: list[tuple[int, int]] = []  # (index into res, column) of each unclosed "("
    square_open: list[tuple[int, int]] = []

    def multiply_from(start: int, multiplier: float) -> None:
        for item in res[start:]:
            item[1] *= multiplier

    for m in _ATTENTION_TOKEN.finditer(text):
        token, weight = m.group(0), m.group(1)
        if token.startswith("\\"):
            if len(token) == 1:
                report.problem(m.start(), "backslash escapes nothing and is dropped; write '\\\\' for a "
                                          "literal backslash, or '\\(' '\\)' '\\[' '\\]' for literal brackets")
            res.append([token[1:], 1.0])
        elif token == "(":
            round_open.append((len(res), m.start()))
        elif token == "[":
            square_open.append((len(res), m.start()))
        elif weight is not None and round_open:
            multiply_from(round_open.pop()[0], _weight_value(weight, m.start(1)))
        elif token == ")" and round_open:
            multiply_from(round_open.pop()[0], ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            multiply_from(square_open.pop()[0], SQUARE_MULTIPLIER)
        else:
            if token[0] in ")]" or weight is not None:
                closer = token[-1]
                opener = "(" if closer == ")" else "["
                report.problem(m.start(), f"{token!r} has no matching {opener!r} and is kept as literal text; "
                                          f"add {opener!r} before it, or escape it as '\\{closer}'")
            for i, part in enumerate(_BREAK.split(token)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])

    # A1111 applies unclosed brackets to the rest of the prompt, all "(" first, then all "["
    for start, column in round_open:
        report.problem(column, "'(' is never closed, so everything after it is weighted x1.1; "
                               "add ')' where the emphasis should end, or escape it as '\\('")
        multiply_from(start, ROUND_MULTIPLIER)
    for start, column in square_open:
        report.problem(column, "'[' is never closed, so everything after it is weighted x1/1.1; "
                               "add ']' where the de-emphasis should end, or escape it as '\\['")
        multiply_from(start, SQUARE_MULTIPLIER)

    return _merge_equal_weights(res or [["", 1.0]])


def _weight_value(weight: str, index: int) -> float:
    try:
        return float(weight)
    except ValueError:  # A1111 fails here too (ValueError from float())
        raise PromptSyntaxError(f"column {index + 1}: emphasis weight {weight!r} is not a number; "
                                f"write it like (word:1.2)") from None


def _merge_equal_weights(res: list[list]) -> list[list]:
    merged = [res[0]]
    for fragment, weight in res[1:]:
        if weight == merged[-1][1]:
            merged[-1][0] += fragment
        else:
            merged.append([fragment, weight])
    return merged


# ---------------------------------------------------------------------------------------------------------
# Scheduling: [from:to:when] prompt editing and [a|b|c] alternation
# ---------------------------------------------------------------------------------------------------------
#
# The language, as A1111's grammar accepts it:
#   prompt  := (plain | escape | emph | edit | alt)*      plain never holds \ [ ] ( ) : |
#   emph    := "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
#   edit    := "[" [prompt ":"] prompt ":" ws? NUMBER ws? "]"
#   alt     := "[" prompt ("|" prompt?)+ "]"
#   start   := (prompt | one of [ ] ( ) : as literal text)*
# Anything else (a "|" outside an alternation, a backslash escaping nothing) fails the whole parse, and the
# prompt is then used verbatim for every step. A bracket that opens no valid group is literal text at the top
# level; inside a group it makes that group invalid.

_NUMBER = re.compile(r"\s*([+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)\s*")
_SPECIAL = "\\[]():|"


@dataclass
class _Edit:
    before: list | None
    after: list
    when: str
    step: int = 0  # `when` resolved against the step count


@dataclass
class _Alternation:
    options: list[list]


class _Failure(Exception):
    def __init__(self, index: int, reason: str):
        super().__init__(reason)
        self.index, self.reason = index, reason


class _ScheduleParser:
    """Recursive descent over the grammar above; groups are tried wherever a bracket opens."""

    def __init__(self, text: str):
        self.text = text

    def top(self) -> tuple[list, list[tuple[int, str]]]:
        """Parse tree and the (index, reason) of each bracket that was read as literal text."""
        text, nodes, literal, i = self.text, [], [], 0
        while i < len(text):
            part, i = self.prompt(i)
            nodes += part
            if i == len(text):
                break
            if text[i] in "([":
                literal.append(self.why_not_group(i))
            elif text[i] not in "]):":
                raise _Failure(i, self.blocker(i))
            nodes.append(text[i])
            i += 1
        return nodes, literal

    def prompt(self, i: int) -> tuple[list, int]:
        text, nodes = self.text, []
        while i < len(text):
            c = text[i]
            if c == "\\":
                if i + 1 == len(text) or text[i + 1] == "\n":
                    break
                nodes.append(text[i:i + 2])
                i += 2
            elif c in "([":
                try:
                    node, i = self.group(i)
                except _Failure:
                    break
                nodes.append(node)
            elif c in "]):|":
                break
            else:
                j = i
                while j < len(text) and text[j] not in _SPECIAL:
                    j += 1
                nodes.append(text[i:j])
                i = j
        return nodes, i

    def group(self, i: int) -> tuple[object, int]:
        opener = self.text[i]
        parts, separators, j = [], [], i + 1
        while True:
            part, j = self.prompt(j)
            parts.append(part)
            if j == len(self.text) or self.text[j] not in ":|" or (opener == "(" and self.text[j] == "|"):
                break
            separators.append(self.text[j])
            j += 1
        closer = ")" if opener == "(" else "]"
        if j == len(self.text):
            raise _Failure(i, f"{opener!r} is never closed")
        if self.text[j] != closer:
            raise _Failure(j, f"{self.text[j]!r} cannot appear inside the {opener}...{closer} group opened at "
                              f"column {i + 1}")
        return self.classify(opener, parts, separators, i), j + 1

    def classify(self, opener: str, parts: list[list], separators: list[str], i: int) -> object:
        if opener == "(":
            if len(separators) > 1:
                raise _Failure(i, "(text:weight) takes one ':'")
            return ["(", *_join(parts, ":"), ")"]
        if not separators:
            return ["[", *parts[0], "]"]
        if set(separators) == {"|"}:
            return _Alternation(parts)
        if set(separators) != {":"}:
            raise _Failure(i, "'[...]' mixes ':' (prompt editing) and '|' (alternation)")
        if len(parts) > 3:
            raise _Failure(i, "prompt editing takes at most [from:to:when]")
        when = "".join(parts[-1]) if all(isinstance(n, str) for n in parts[-1]) else ""
        number = _NUMBER.fullmatch(when)
        if number is None:
            raise _Failure(i, f"prompt editing needs a number of steps last, got {when.strip()!r}")
        before = parts[0] if len(parts) == 3 else None
        return _Edit(before, parts[-2], number.group(1))

    def why_not_group(self, i: int) -> tuple[int, str]:
        try:
            self.group(i)
        except _Failure as failure:
            return failure.index, failure.reason
        raise AssertionError("a group that parses is never literal")

    def blocker(self, i: int) -> str:
        if self.text[i] == "|":
            return "'|' is outside any [a|b] alternation; escape it as '\\|'"
        return "backslash at the end of a line escapes nothing; write '\\\\' for a literal backslash"


def _join(parts: list[list], separator: str) -> list:
    out = list(parts[0])
    for part in parts[1:]:
        out += [separator, *part]
    return out


def _resolve_steps(nodes: list, steps: int, old: bool) -> set[int]:
    """Steps at which the text can change; stores each edit's resolved step (A1111 ``collect_steps``)."""
    found = set()
    for node in nodes:
        if isinstance(node, _Edit):
            v = float(node.when)
            if old:
                v = v * steps if v < 1 else v
            elif "." in node.when:  # "0.5" and "2.0" are fractions of the steps, "2" is step 2
                v = v * steps
            node.step = int(max(-1.0, min(steps, v)))  # = A1111's min(steps, int(v)), without inf overflow
            if node.step >= 1:
                found.add(node.step)
            found |= _resolve_steps((node.before or []) + node.after, steps, old)
        elif isinstance(node, _Alternation):
            found |= set(range(1, steps + 1))
            for option in node.options:
                found |= _resolve_steps(option, steps, old)
        elif isinstance(node, list):
            found |= _resolve_steps(node, steps, old)
    return found


def _text_at(nodes: list, step: int) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Edit):
            out.append(_text_at((node.before or []) if step <= node.step else node.after, step))
        elif isinstance(node, _Alternation):
            out.append(_text_at(node.options[(step - 1) % len(node.options)], step))
        else:
            out.append(_text_at(node, step))
    return "".join(out)


def prompt_schedules(prompt: str, steps: int, strict: bool = False,
                     use_old_scheduling: bool = False) -> list[list]:
    """A1111 ``get_learned_conditioning_prompt_schedules([prompt], steps)[0]``: ``[[until_step, text], ...]``.

    ``when`` with a decimal point is a fraction of ``steps``, without one a step number (A1111's default);
    ``use_old_scheduling=True`` gives A1111's older rule: ``when < 1`` is a fraction, else a step number.
    """
    return _schedule(prompt, steps, use_old_scheduling, _Report(strict))


def _schedule(prompt: str, steps: int, old: bool, report: _Report) -> list[list]:
    _check_steps(steps)
    parser = _ScheduleParser(prompt)
    try:
        nodes, literal = parser.top()
    except _Failure as failure:
        report.problem(failure.index, f"{failure.reason}; prompt editing and alternation in this prompt are "
                                      f"ignored and it is used verbatim")
        return [[steps, prompt]]
    for index, reason in literal:
        if _looks_scheduled(prompt, index):
            report.problem(index, f"{reason}, so this '[...]' is read as plain text (with emphasis), not as "
                                  f"prompt editing [from:to:when] or alternation [a|b]")
    changes = sorted(_resolve_steps(nodes, steps, old) | {steps})
    return [[step, _text_at(nodes, step)] for step in changes]


def _looks_scheduled(prompt: str, index: int) -> bool:
    """Whether a bracket read as literal text holds a ':' or '|' of its own (else only emphasis is at stake)."""
    start = prompt.rfind("[", 0, index + 1)
    end = prompt.find("]", index)
    return start != -1 and any(c in prompt[start:end if end != -1 else len(prompt)] for c in ":|")


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise InvalidArgumentError(f"steps={steps!r}: the number of sampling steps must be an int >= 1")


# ---------------------------------------------------------------------------------------------------------
# Composable AND and the structured result
# ---------------------------------------------------------------------------------------------------------

_AND = re.compile(r"\bAND\b")
_TERM_WEIGHT = re.compile(r"^(.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$", re.S)


def split_and(prompt: str) -> list[tuple[str, float]]:
    """A1111 ``get_multicond_prompt_list`` for one prompt: ``[(text, weight), ...]``, weight 1.0 by default."""
    return [(text, weight) for text, weight, _ in _split_and(prompt)]


def _split_and(prompt: str) -> list[tuple[str, float, int]]:
    terms, start = [], 0
    for end in [m.start() for m in _AND.finditer(prompt)] + [len(prompt)]:
        text, weight = _TERM_WEIGHT.match(prompt[start:end]).groups()
        terms.append((text, float(weight) if weight is not None else 1.0, start))
        start = end + len("AND")
    return terms


@dataclass(frozen=True)
class PromptTerm:
    """One AND term: its text, AND weight (negative for NOT) and ``[(until_step, text_at_step)]``."""

    text: str
    weight: float
    schedule: list[tuple[int, str]]


@dataclass(frozen=True)
class ParsedPrompt:
    """A whole prompt for ``steps`` sampling steps, as the encoder needs it."""

    prompt: str
    steps: int
    terms: list[PromptTerm]

    def texts(self) -> list[str]:
        """Every distinct text any term uses at any step, in first-use order (each is encoded once)."""
        return list(dict.fromkeys(text for term in self.terms for _, text in term.schedule))


def parse_prompt(text: str, steps: int, strict: bool = False, *, and_split: bool = True,
                 use_old_scheduling: bool = False) -> ParsedPrompt:
    """Split on AND, schedule each term and check its emphasis syntax (A1111 ``get_multicond_learned_conditioning``).

    ``and_split=False`` reads the whole text as one term, as A1111 does for negative prompts.
    """
    _check_steps(steps)
    pieces = _split_and(text) if and_split else [(text, 1.0, 0)]
    terms = []
    for piece, weight, offset in pieces:
        schedule = _schedule(piece, steps, use_old_scheduling, _Report(strict, offset))
        _attention(piece, _Report(strict, offset))  # emphasis problems, reported once at source columns
        terms.append(PromptTerm(piece, weight, [(until, scheduled) for until, scheduled in schedule]))
    return ParsedPrompt(text, steps, terms)
