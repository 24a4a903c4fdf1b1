"""The prompt language of AUTOMATIC1111's stable-diffusion-webui (``modules/prompt_parser.py``).

Three layers, applied in A1111's order:

1. ``split_and``: composable-diffusion terms ``a cat AND a dog:0.5`` (Liu et al. 2022).
2. ``prompt_schedules``: prompt editing ``[from:to:when]`` and alternation ``[a|b]`` turn one term into
   ``[[until_step, text], ...]``.
3. ``parse_prompt_attention``: emphasis ``(x)``, ``[x]``, ``(x:w)`` and ``BREAK`` turn one scheduled text
   into ``[[fragment, weight], ...]`` for the encoder.

Outputs equal A1111's for the same input, malformed input included: scheduling runs A1111's lark grammar and
emphasis A1111's regular expression. Where A1111 silently reads malformed syntax in some way, we read it the
same way and also emit a ``PromptSyntaxWarning`` naming the 1-based column (``strict=True`` raises
``PromptSyntaxError`` instead).

lark's Earley parser picks among the readings of a malformed prompt by rules that changed after lark 1.1.2,
the version A1111 pins: ``[a:b:2](`` is text with lark 1.1.2 and prompt editing followed by ``(`` with lark
1.2.2 and 1.3.1. We follow the installed lark, so such prompts read as A1111 would with that lark.

Deliberate differences from A1111:

- an emphasis or AND weight that is not finite or lies beyond ``±MAX_WEIGHT`` raises ``InvalidArgumentError``
  (A1111 reads ``(red:nan)`` and ``(red:1e30)`` as text weighted 1.1, and a 400-digit weight as inf);
- a ``when`` too large for an int (``[a:b:1e999]``) means "never switch", where A1111 raises OverflowError.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import lark

from difftech_lab.errors import InvalidArgumentError, PromptSyntaxError, PromptSyntaxWarning, warn_user

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
        warn_user(text, PromptSyntaxWarning)


# Weights beyond ±100 are refused: z * w then stays far inside fp16 (CLIP hidden states reach a few tens,
# fp16 overflows at 65504), and any weight past a few already drowns out the rest of the prompt.
MAX_WEIGHT = 100.0


def _checked_weight(value: float, written: str, where: str) -> float:
    if not math.isfinite(value):
        raise InvalidArgumentError(f"weight {written} in {where!r} is not a finite number; "
                                   f"use a weight such as 1.2")
    if abs(value) > MAX_WEIGHT:
        raise InvalidArgumentError(f"weight {written} in {where!r} is beyond ±{MAX_WEIGHT:g}; "
                                   f"use a weight such as 1.2")
    return value


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
    # a number A1111 does not read as a weight, keeping "(x:1e30)" as text: matched to refuse absurd values
    | :\s*([+-]?(?:(?:\d+\.?\d*|\.\d+)[eE][+-]?\d+|(?i:nan|inf(?:inity)?)))\s*\)
    | \) | \]
    | [^\\()\[\]:]+           # plain text
    | :
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text: str, strict: bool = False) -> list[list]:
    """A1111 emphasis: ``[[fragment, weight], ...]``, with ``["BREAK", -1]`` for each chunk break.

    Raises ``InvalidArgumentError`` for a weight, written or from nesting, that is not finite or is beyond
    ``±MAX_WEIGHT``.
    """
    return _attention(text, _Report(strict))


def _attention(text: str, report: _Report) -> list[list]:
    res: list[list] = []
    round_open: list[tuple[int, int]] = []  # (index into res, column) of each unclosed "("
    square_open: list[tuple[int, int]] = []

    def multiply_from(start: int, multiplier: float) -> None:
        for item in res[start:]:
            item[1] *= multiplier

    for m in _ATTENTION_TOKEN.finditer(text):
        token, weight, text_number = m.group(0), m.group(1), m.group(2)
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
            start, column = round_open.pop()
            multiply_from(start, _weight_value(weight, text[column:m.end()], m.start(1)))
        elif text_number is not None and round_open:
            start, column = round_open.pop()
            _weight_value(text_number, text[column:m.end()], m.start(2))  # only to refuse nan, inf, 1e30
            report.problem(m.start(2), f"A1111 reads only plain decimals as weights, so {text_number!r} is kept "
                                       f"as text and the bracket weighs x1.1; write the weight like 1.2")
            res.append([token[:-1], 1.0])
            multiply_from(start, ROUND_MULTIPLIER)
        elif token == ")" and round_open:
            multiply_from(round_open.pop()[0], ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            multiply_from(square_open.pop()[0], SQUARE_MULTIPLIER)
        else:
            if token[-1] in ")]":
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

    for fragment, weight in res:
        if not abs(weight) <= MAX_WEIGHT:
            raise InvalidArgumentError(f"nested emphasis gives {fragment!r} weight {weight:.6g}, beyond "
                                       f"±{MAX_WEIGHT:g}; use fewer brackets or smaller weights")
    return _merge_equal_weights(res or [["", 1.0]])


def _weight_value(weight: str, group: str, index: int) -> float:
    try:
        value = float(weight)
    except ValueError:  # A1111 fails here too (ValueError from float())
        raise PromptSyntaxError(f"column {index + 1}: emphasis weight {weight!r} is not a number; "
                                f"write it like (word:1.2)") from None
    return _checked_weight(value, weight, group)


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

# A1111's grammar, rule for rule and alternative for alternative. It is ambiguous, and lark's Earley parser
# picks one reading by rules that depend on how the grammar is written, so only this exact grammar reads every
# malformed prompt (stray brackets and colons around groups) the way A1111 does. Top-level brackets and colons
# that open no group are literal text; a "|" outside an alternation, or a backslash escaping nothing, fails
# the parse and the prompt is then used verbatim for every step.
_GRAMMAR = r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
           | "(" prompt ":" prompt ")"
           | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""

# lark's SIGNED_NUMBER with the optional whitespace around it, to explain a rejected `when`
_WHEN = re.compile(r"\s*[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")


@functools.cache
def _grammar() -> lark.Lark:
    return lark.Lark(_GRAMMAR)  # built on first use: compiling it costs more than importing the package


@dataclass(frozen=True)
class _Edit:
    before: tuple
    after: tuple
    when: str


@dataclass(frozen=True)
class _Alternation:
    options: tuple[tuple, ...]


@dataclass(frozen=True)
class _Parse:
    nodes: tuple  # text pieces, _Edit and _Alternation; the prompt itself when the parse failed
    failed_at: int | None  # index of the character the parse could not get past
    literal_squares: tuple[int, ...]  # indexes of top-level "[" read as literal text


@functools.lru_cache(maxsize=256)
def _parse(prompt: str) -> _Parse:
    """The prompt's parse, cached: Earley parsing takes a noticeable fraction of a second on a long prompt."""
    first_square = prompt.find("[")
    if first_square == -1 or not any(c in ":|" for c in prompt[first_square:]):
        # No [from:to:when] or [a|b] can form, so the text is the same at every step whatever the parse; every
        # blocker is fatal, as no alternation can hold it, and lark would stop at the first.
        blockers = _blockers(prompt)
        return _Parse((prompt,), blockers[0] if blockers else None, ())
    try:
        tree = _grammar().parse(prompt)
    except lark.exceptions.UnexpectedInput as error:
        stop = error.pos_in_stream if error.pos_in_stream >= 0 else len(prompt)
        # every branch of the parse dies at a blocker, the literal-text reading at the first one
        return _Parse((prompt,), max(i for i in _blockers(prompt) if i <= stop), ())
    literal = tuple(t.start_pos for t in tree.children if isinstance(t, lark.Token) and t == "[")
    return _Parse(_nodes(tree), None, literal)


def _blockers(prompt: str) -> list[int]:
    """Indexes where the parse can fail: each unescaped '|' (fatal outside an alternation) and each backslash
    at the end of a line (always fatal)."""
    found, i = [], 0
    while i < len(prompt):
        if prompt[i] == "\\":
            if prompt[i + 1:i + 2] in ("", "\n"):
                found.append(i)
            i += 2
            continue
        if prompt[i] == "|":
            found.append(i)
        i += 1
    return found


def _nodes(tree: lark.Tree) -> tuple:
    out: list = []
    for child in tree.children:
        if isinstance(child, lark.Token):
            out.append(str(child))
        elif child.data == "scheduled":
            before, after, _, when, _ = child.children
            out.append(_Edit(_nodes(before) if before is not None else (), _nodes(after), str(when)))
        elif child.data == "alternate":
            options = child.children  # an empty option is None or an empty prompt
            out.append(_Alternation(tuple(_nodes(option) if option is not None else () for option in options)))
        else:
            out.extend(_nodes(child))
    return tuple(out)


def _switch_step(when: str, steps: int, old: bool) -> int:
    """A1111 ``collect_steps``: the last step showing the text before the edit; below 1, no step does."""
    v = float(when)
    if old:
        v = v * steps if v < 1 else v
    elif "." in when:  # "0.5" and "2.0" are fractions of the steps, "2" is step 2
        v = v * steps
    return int(max(-1.0, min(steps, v)))  # compares as A1111's min(steps, int(v)), which fails on inf


def _switch_steps(nodes: tuple, steps: int, old: bool) -> set[int]:
    found = set()
    for node in nodes:
        if isinstance(node, _Edit):
            step = _switch_step(node.when, steps, old)
            if step >= 1:
                found.add(step)
            found |= _switch_steps(node.before + node.after, steps, old)
        elif isinstance(node, _Alternation):
            found.update(range(1, steps + 1))
            for option in node.options:
                found |= _switch_steps(option, steps, old)
    return found


def _text_at(nodes: tuple, step: int, steps: int, old: bool) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Edit):
            shown = node.before if step <= _switch_step(node.when, steps, old) else node.after
            out.append(_text_at(shown, step, steps, old))
        else:
            out.append(_text_at(node.options[(step - 1) % len(node.options)], step, steps, old))
    return "".join(out)


def prompt_schedules(prompt: str, steps: int, strict: bool = False,
                     use_old_scheduling: bool = False) -> list[list]:
    """A1111 ``get_learned_conditioning_prompt_schedules([prompt], steps)[0]``: ``[[until_step, text], ...]``.

    ``when`` with a decimal point is a fraction of ``steps``, without one a step number (A1111's default);
    ``use_old_scheduling=True`` gives A1111's older rule: ``when < 1`` is a fraction, else a step number.
    A ``when`` that comes to less than step 1 (``[a:b:0]``, ``[a:b:-2]``) shows ``b`` from the first step.
    """
    return _schedule(prompt, steps, use_old_scheduling, _Report(strict))


def _schedule(prompt: str, steps: int, old: bool, report: _Report) -> list[list]:
    _check_steps(steps)
    parsed = _parse(prompt)
    if parsed.failed_at is not None:
        reason = ("'|' is outside any valid [a|b] alternation; escape it as '\\|'" if prompt[parsed.failed_at] == "|"
                  else "backslash at the end of a line escapes nothing; write '\\\\' for a literal backslash")
        report.problem(parsed.failed_at, f"{reason}; prompt editing and alternation in this prompt are ignored "
                                         f"and it is used verbatim")
        return [[steps, prompt]]
    for index in parsed.literal_squares:
        problem = _literal_square_problem(prompt, index)
        if problem is not None:
            report.problem(problem[0], f"{problem[1]}, so this '[...]' is read as plain text (with emphasis), not "
                                       f"as prompt editing [from:to:when] or alternation [a|b]")
    changes = sorted(_switch_steps(parsed.nodes, steps, old) | {steps})
    return [[step, _text_at(parsed.nodes, step, steps, old)] for step in changes]


def _literal_square_problem(prompt: str, i: int) -> tuple[int, str] | None:
    """Where and why the ``[`` at ``i``, read as text, is no prompt editing or alternation, judged from its top
    level (lark keeps only the reading it chose); None when it holds no ':' or '|', as then only its emphasis
    is at stake and the emphasis pass reports that."""
    depth, separators, j = 0, [], i + 1
    while j < len(prompt) and not (depth == 0 and prompt[j] in ")]"):
        c = prompt[j]
        if c == "\\":
            j += 1
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif depth == 0 and c in ":|":
            separators.append(j)
        j += 1
    if not any(c in ":|" for c in prompt[i:j]):
        return None
    if j >= len(prompt):
        return i, "'[' is never closed"
    if prompt[j] == ")":
        return j, f"')' cannot appear inside the '[...]' opened at column {i + 1}"
    marks = {prompt[k] for k in separators}
    if marks == {":", "|"}:
        return i, "'[...]' mixes ':' (prompt editing) and '|' (alternation)"
    if ":" in marks and len(separators) > 2:
        return i, "prompt editing takes at most [from:to:when]"
    if ":" in marks and not _WHEN.fullmatch(prompt[separators[-1] + 1:j]):
        return i, f"prompt editing needs a number of steps last, got {prompt[separators[-1] + 1:j].strip()!r}"
    return i, "A1111's grammar reads it as text here: a group inside it is malformed, or a stray bracket or ':' " \
              "next to it takes precedence"


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise InvalidArgumentError(f"steps={steps!r}: the number of sampling steps must be an int >= 1")


# ---------------------------------------------------------------------------------------------------------
# Composable AND and the structured result
# ---------------------------------------------------------------------------------------------------------

_AND = re.compile(r"\bAND\b")
_TERM_WEIGHT = re.compile(r"^(.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$", re.S)


def split_and(prompt: str) -> list[tuple[str, float]]:
    """A1111 ``get_multicond_prompt_list`` for one prompt: ``[(text, weight), ...]``, weight 1.0 by default.

    Raises ``InvalidArgumentError`` for a weight that is not finite or is beyond ``±MAX_WEIGHT``.
    """
    return [(text, weight) for text, weight, _ in _split_and(prompt)]


def _split_and(prompt: str) -> list[tuple[str, float, int]]:
    terms, start = [], 0
    for end in [m.start() for m in _AND.finditer(prompt)] + [len(prompt)]:
        text, weight = _TERM_WEIGHT.match(prompt[start:end]).groups()
        value = 1.0 if weight is None else _checked_weight(float(weight), weight, prompt[start:end].strip())
        terms.append((text, value, start))
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

    ``and_split=False`` reads the whole text as one term, as A1111 does for negative prompts. Raises
    ``InvalidArgumentError`` for an emphasis or AND weight that is not finite or is beyond ``±MAX_WEIGHT``.
    """
    _check_steps(steps)
    pieces = _split_and(text) if and_split else [(text, 1.0, 0)]
    terms = []
    for piece, weight, offset in pieces:
        schedule = _schedule(piece, steps, use_old_scheduling, _Report(strict, offset))
        _attention(piece, _Report(strict, offset))  # emphasis problems, reported once at source columns
        terms.append(PromptTerm(piece, weight, [(until, scheduled) for until, scheduled in schedule]))
    return ParsedPrompt(text, steps, terms)
