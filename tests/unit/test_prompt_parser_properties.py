"""Invariants of A1111's prompt rules (modules/prompt_parser.py) over seeded random prompts.

Balanced prompts are generated from a small syntax tree, so each one's schedule is known exactly; malformed
prompts are balanced ones with random characters inserted, deleted or replaced, and must still keep A1111's
invariants. Emphasis prompts check that nested weights multiply.
"""

import math
import random
import warnings

import pytest

from difftech_lab.conditioning.prompt_parser import MAX_WEIGHT, parse_prompt_attention, prompt_schedules
from difftech_lab.errors import InvalidArgumentError, PromptSyntaxError, PromptSyntaxWarning

WORDS = ["cat", "a b", "sky, ", "7", "-", "x\\(y\\)", "\\[z\\]", "\n"]
WHENS = ["3", "1", "0", "-2", " 5", "4 ", "+2", "1e1", "0.5", ".25", "1.5", "0.0", "-0.5", "2.0", "0.05"]
STEPS = [1, 2, 3, 10, 25]


# --- balanced prompts: ("text", s) | ("edit", before, after, when) | ("alt", options) | ("wrap", open, nodes, close)
# Kept small: lark's Earley parse, like A1111's, costs milliseconds per bracket.

def _nodes(rng: random.Random, depth: int) -> list:
    nodes = []
    for _ in range(rng.randint(0, 2) if depth else rng.randint(1, 3)):
        if depth >= 2 or rng.random() < 0.5:
            nodes.append(("text", rng.choice(WORDS)))
            continue
        kind = rng.choice(["edit", "edit", "add", "remove", "alt", "round", "weight", "square"])
        if kind in ("edit", "add", "remove"):
            before = _nodes(rng, depth + 1) if kind == "edit" else None
            after = [] if kind == "remove" else _nodes(rng, depth + 1)
            nodes.append(("edit", before, after, rng.choice(WHENS)))
        elif kind == "alt":
            nodes.append(("alt", [_nodes(rng, depth + 1) for _ in range(rng.randint(2, 3))]))
        else:
            opener, closer = {"round": ("(", ")"), "weight": ("(", f":{rng.choice(['1.2', '0.5', ' 2'])})"),
                              "square": ("[", "]")}[kind]
            nodes.append(("wrap", opener, _nodes(rng, depth + 1), closer))
    return nodes


def _render(nodes: list, step: int | None = None, steps: int = 0) -> str:
    """The prompt (``step=None``), or its text at ``step`` by A1111's rules, written out independently."""
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "wrap":
            out.append(node[1] + _render(node[2], step, steps) + node[3])
        elif node[0] == "alt":
            if step is None:
                out.append("[" + "|".join(_render(option) for option in node[1]) + "]")
            else:
                out.append(_render(node[1][(step - 1) % len(node[1])], step, steps))
        else:
            _, before, after, when = node
            if step is None:
                head = "" if before is None else _render(before) + ":"
                out.append(f"[{head}{_render(after)}:{when}]")
            else:
                shown = (before or []) if step <= _switch(when, steps) else after
                out.append(_render(shown, step, steps))
    return "".join(out)


def _switch(when: str, steps: int) -> int:
    value = float(when) * (steps if "." in when else 1)
    return min(steps, int(value))


def _changes(nodes: list, steps: int) -> set[int]:
    found = {steps}
    for node in nodes:
        if node[0] == "edit":
            if _switch(node[3], steps) >= 1:
                found.add(_switch(node[3], steps))
            found |= _changes((node[1] or []) + node[2], steps)
        elif node[0] == "alt":
            found |= set(range(1, steps + 1))
            for option in node[1]:
                found |= _changes(option, steps)
        elif node[0] == "wrap":
            found |= _changes(node[2], steps)
    return found


def _mutate(rng: random.Random, prompt: str) -> str:
    chars = list(prompt)
    for _ in range(rng.randint(1, 3)):
        at = rng.randint(0, len(chars))
        action = rng.choice(["insert", "delete", "replace"]) if chars else "insert"
        if action == "insert":
            chars.insert(at, rng.choice("[]():|\\ 3."))
        elif action == "delete":
            del chars[min(at, len(chars) - 1)]
        else:
            chars[min(at, len(chars) - 1)] = rng.choice("[]():|\\ 3.")
    return "".join(chars)


def _check_schedule(schedule: list, steps: int) -> None:
    until = [step for step, _ in schedule]
    assert until == sorted(set(until)), schedule
    assert until[-1] == steps and until[0] >= 1, schedule


def _quiet_schedules(prompt: str, steps: int) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptSyntaxWarning)
        return prompt_schedules(prompt, steps)


# 5,000 Earley parses (~10 ms each, as A1111 runs them); the emphasis properties below add 20,000 prompts more
@pytest.mark.slow
def test_schedule_invariants_over_balanced_and_malformed_prompts():
    rng = random.Random(20240611)
    for _ in range(2_500):
        nodes = _nodes(rng, 0)
        prompt = _render(nodes)
        outside = [node[1] for node in nodes if node[0] == "text"]
        for steps in STEPS:
            with warnings.catch_warnings():
                warnings.simplefilter("error", PromptSyntaxWarning)  # balanced prompts are read as groups
                schedule = prompt_schedules(prompt, steps)
            _check_schedule(schedule, steps)
            assert schedule == [[s, _render(nodes, s, steps)] for s in sorted(_changes(nodes, steps))], prompt
            for _, text in schedule:
                at = 0
                for piece in outside:  # top-level text survives every step, in order
                    at = text.index(piece, at) + len(piece)

        broken, steps = _mutate(rng, prompt), rng.choice(STEPS)
        schedule = _quiet_schedules(broken, steps)
        _check_schedule(schedule, steps)
        first, last = broken.find("["), broken.rfind("]")
        head = broken if first == -1 else broken[:first]
        tail = broken[last + 1:] if last > first >= 0 else ""
        for _, text in schedule:  # only a [...] group can change, so text before and after all of them stays
            assert text.startswith(head) and text.endswith(tail), (broken, schedule)


# --- emphasis: ("word", w) | ("emph", multiplier, opener, nodes, closer) ---------------------------------------

def _emphasis(rng: random.Random, depth: int, counter: list) -> list:
    nodes = []
    for _ in range(rng.randint(1, 3)):
        if depth >= 4 or rng.random() < 0.4:
            counter[0] += 1
            nodes.append(("word", f"w{counter[0]}"))
            continue
        weight = rng.choice(["1.3", "0.7", "2", ".5", " 1.05 "])
        multiplier, opener, closer = rng.choice([(1.1, "(", ")"), (1 / 1.1, "[", "]"),
                                                 (float(weight), "(", f":{weight})")])
        nodes.append(("emph", multiplier, opener, _emphasis(rng, depth + 1, counter), closer))
    return nodes


def _emphasis_text(nodes: list) -> str:
    return " ".join(node[1] if node[0] == "word" else node[2] + _emphasis_text(node[3]) + node[4] for node in nodes)


def _word_weights(nodes: list, weight: float = 1.0) -> dict[str, float]:
    found = {}
    for node in nodes:
        if node[0] == "word":
            found[node[1]] = weight
        else:
            found |= _word_weights(node[3], weight * node[1])
    return found


def test_nested_emphasis_weights_multiply():
    rng = random.Random(7)
    for _ in range(10_000):
        nodes = _emphasis(rng, 0, [0])
        prompt = _emphasis_text(nodes)
        expected = _word_weights(nodes)
        with warnings.catch_warnings():
            warnings.simplefilter("error", PromptSyntaxWarning)
            fragments = parse_prompt_attention(prompt)
        assert "".join(f for f, _ in fragments).split() == list(expected), prompt
        for fragment, weight in fragments:
            for word in fragment.split():
                assert math.isclose(weight, expected[word], rel_tol=1e-12), (prompt, word, fragments)


def test_malformed_emphasis_weights_stay_in_bounds_or_raise():
    rng = random.Random(11)
    for _ in range(10_000):
        prompt = _mutate(rng, _emphasis_text(_emphasis(rng, 0, [0])))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PromptSyntaxWarning)
                fragments = parse_prompt_attention(prompt)
        except PromptSyntaxError:  # a weight float() cannot read, such as "1.3.": A1111 raises ValueError
            continue
        except InvalidArgumentError as error:  # a mutation made "2" into "23", nested past MAX_WEIGHT
            assert "nested emphasis" in str(error) or "beyond" in str(error), prompt
            continue
        assert all(abs(weight) <= MAX_WEIGHT for _, weight in fragments), (prompt, fragments)
