"""A generated text-generation task with an exact answer and planted problems (for the demo, the tests and the
SFT benchmark).

Customer-support messages in, a JSON object out::

    user:      "hi team, where is my order #K20417? need it today"
    assistant: {"intent": "track_order", "order_id": "K20417", "urgency": "high"}

- ``intent``: one of :data:`INTENTS` (7 in week 1); week 2 adds :data:`NEW_INTENT` (``warranty_claim``);
- ``order_id``: the order number the message names, written in one of several surface forms (``#K20417``,
  ``K-20417``, ``k20417``, ``K20417``) and answered in the canonical form (:func:`canonical_order_id`), or
  ``null`` when the message names none;
- ``urgency``: ``"high"`` / ``"low"`` when the message carries a cue (``asap``, ``urgent``, ``today`` /
  ``no rush``, ``whenever you get a chance``), else ``"normal"``.

Messages are templates x slots x light noise (greetings, sign-offs, casing, the odd typo), so the mapping is
learnable by a small causal LM from a few hundred examples and can be scored exactly (parse the JSON, compare the
objects). Every conversation starts with the same :data:`SYSTEM_PROMPT`, which names the keys and the allowed
values, so a base instruct model has a fair chance before fine-tuning. All text is ASCII except the one planted
non-UTF-8 line. Each line also carries ``customer_id`` (a group: customers write several messages) and
``channel`` (email/chat/app, a slice).

Week 1 (:func:`generate_week1`) plants a handful of bad lines per reason, counted in ``planted`` with the keys the
data check uses where it has one: ``unparseable`` (a broken JSON line), ``unknown_role`` (a turn whose role is
not system/user/assistant), ``empty_content`` (an empty user turn), ``missing_answer`` (no final assistant
turn), ``exact_duplicates`` (extra identical copies), ``conflicting_duplicates`` (one prompt with two different
answers; all copies counted), ``non_utf8`` (a line encoded as Latin-1).

Week 2 (:func:`generate_week2`): the new intent mixed with the old ones (so the gate's earlier test set still
measures the old skills), a few prompts repeated from week 1 with the same answer, two empty user turns.
:func:`careless_batch` is week 2 with its answers corrupted (two intents swapped, urgency high/low swapped), for
the demo's "a careless update is refused" step.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keepfit._io import atomic_write_bytes

__all__ = [
    "CarelessBatch",
    "ChatBatch",
    "DemoChatFiles",
    "INTENTS",
    "NEW_INTENT",
    "SYSTEM_PROMPT",
    "URGENCIES",
    "answer_json",
    "canonical_order_id",
    "careless_batch",
    "generate_week1",
    "generate_week2",
    "write_generation_demo",
]

GROUP_KEY, SLICE_KEY = "customer_id", "channel"
URGENCIES = ("high", "normal", "low")
# (intent a, intent b) whose answers the careless batch swaps, and the urgency swap it applies on top
CARELESS_INTENT_SWAP = ("refund_request", "cancel_order")
CARELESS_URGENCY_SWAP = ("high", "low")

_SLOTS: dict[str, list[str]] = {
    "item": [
        "headphones",
        "laptop bag",
        "coffee maker",
        "running shoes",
        "phone case",
        "desk lamp",
        "backpack",
        "blender",
        "winter jacket",
        "smart watch",
        "keyboard",
        "yoga mat",
        "air fryer",
        "monitor",
    ],
    # no "today" here: it is an urgency cue
    "day": ["on monday", "yesterday", "last week", "on friday", "two days ago", "over the weekend", "last month"],
    "amount": ["$19.99", "$45", "$120", "$8.50", "$230", "$64.20", "$15"],
    "city": ["Berlin", "Leeds", "Austin", "Lyon", "Porto", "Denver", "Oslo", "Ghent"],
    "months": [str(n) for n in (3, 4, 5, 7, 8, 10, 11, 14)],
}

INTENTS: dict[str, list[str]] = {
    "track_order": [
        "where is my order {order}",
        "can you tell me where order {order} is",
        "has order {order} shipped yet",
        "the tracking for {order} has not moved since {day}",
        "my {item} still hasn't arrived",
        "any news on the delivery of my {item}",
        "what's the status of order {order}",
        "when will my {item} be delivered",
        "i ordered a {item} {day} and still have no tracking number",
    ],
    "refund_request": [
        "i want a refund for order {order}",
        "can i get my money back for the {item}",
        "please refund the {amount} for order {order}",
        "i sent the {item} back {day}, where is my refund",
        "how do i get a refund for my {item}",
        "i'd like my money back for order {order}, the {item} doesn't fit",
        "still waiting on the refund of {amount} for the {item}",
    ],
    "change_address": [
        "i need to change the delivery address on order {order}",
        "please update my shipping address to {city}",
        "i moved to {city}, can you send order {order} there",
        "wrong address on order {order}, can you fix it",
        "can the {item} go to my work address instead",
        "how do i edit my address before the {item} ships",
    ],
    "cancel_order": [
        "please cancel order {order}",
        "i want to cancel the {item} i ordered {day}",
        "cancel my order {order} before it ships",
        "i changed my mind, cancel the {item}",
        "how do i cancel an order i placed {day}",
        "stop order {order}, i don't need it anymore",
    ],
    "damaged_item": [
        "my {item} arrived broken",
        "the {item} from order {order} came damaged",
        "the box was crushed and the {item} inside is cracked",
        "order {order} arrived with a scratched {item}",
        "the {item} i got {day} is dented and missing a part",
        "received a damaged {item}, what now",
    ],
    "payment_issue": [
        "my card was charged twice for order {order}",
        "the payment of {amount} failed at checkout",
        "why was i charged {amount} for order {order}",
        "checkout keeps declining my card",
        "i paid for the {item} but order {order} says payment pending",
        "there's a charge of {amount} on my card i don't recognise",
    ],
    "account_access": [
        "i can't log in to my account",
        "my password reset email never arrives",
        "my account is locked after too many attempts",
        "the two-factor code doesn't work when i sign in",
        "i can't sign in to check order {order}",
        "how do i recover my account, i lost access to my email",
    ],
}

NEW_INTENT = "warranty_claim"
_NEW_TEMPLATES = [
    "my {item} stopped working after {months} months, it's under warranty",
    "i want to make a warranty claim for the {item} from order {order}",
    "the {item} broke after {months} months of normal use, is that covered by the warranty",
    "warranty claim please: order {order}, the {item} no longer powers on",
    "is my {item} still under warranty? it died {day}",
    "the {item} from order {order} has a fault after {months} months, what does the warranty cover",
]

SYSTEM_PROMPT = (
    "Extract the fields of the support message as JSON with keys intent, order_id, urgency. "
    f"intent is one of {', '.join([*INTENTS, NEW_INTENT])}; "
    'order_id is the order number written like "A12345", or null when the message has none; '
    'urgency is "high", "normal" or "low".'
)

# urgency cues, put before or after the message; no other phrase of a message contains them
_CUES: dict[str, dict[str, list[str]]] = {
    "high": {
        "before": ["URGENT: ", "urgent - ", "this is urgent, ", "asap: "],
        "after": [
            " asap",
            " as soon as possible please",
            ", i need this sorted today",
            " - it's urgent",
            ", please deal with it today",
        ],
    },
    "low": {
        "before": ["no rush, but ", "whenever you have a moment: "],
        "after": [" no rush", ", whenever you get a chance", ", no hurry at all", " - low priority, just curious"],
    },
}
_URGENCY_P = [0.3, 0.5, 0.2]  # high, normal, low
_OPENERS = ["", "", "", "", "hi, ", "hello, ", "hey ", "good morning, ", "dear support, ", "hi team, ",
            "quick question: ", "sorry to bother you, ", "hello again, "]  # fmt: skip
_CLOSERS = ["", "", "", "", ". thanks", ", thank you!", "?", ".", " - cheers", "\nkind regards, sam",
            "\n\nsent from my phone", ". best, alex", ", let me know"]  # fmt: skip
_CHANNELS = ["email", "chat", "app"]
_ID_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I or O: they read as 1 and 0
_ORDER_ID = re.compile(r"#?\b([A-Za-z])[- ]?(\d{5})\b")


@dataclass(frozen=True)
class ChatBatch:
    """One generated batch: ``lines`` are the file's lines as bytes (JSON, UTF-8 except a planted non-UTF-8 line),
    ``planted`` the counts of what was planted (keys in the module docstring)."""

    lines: list[bytes]
    planted: dict[str, Any]


@dataclass(frozen=True)
class CarelessBatch:
    """Week 2's good conversations with corrupted answers; ``corrupted`` counts the answers changed per kind."""

    lines: list[bytes]
    corrupted: dict[str, int]


@dataclass(frozen=True)
class DemoChatFiles:
    """The files :func:`write_generation_demo` wrote (JSONL, chat shape), their line counts and planted counts."""

    week1: Path
    week2: Path
    week1_rows: int
    week2_rows: int
    planted_week1: dict[str, Any]
    planted_week2: dict[str, Any]
    careless: Path | None = None
    corrupted_careless: dict[str, int] = field(default_factory=dict)


def canonical_order_id(surface: str) -> str:
    """``"#k-20417"``, ``"K 20417"``, ``"k20417"`` -> ``"K20417"``: the form answers carry (letter upper-cased,
    separators dropped). Raises ValueError on a string that is not an order id."""
    match = _ORDER_ID.fullmatch(surface.strip())
    if match is None:
        raise ValueError(f"not an order id: {surface!r} (expected a letter and 5 digits, such as '#A12345')")
    return match.group(1).upper() + match.group(2)


def answer_json(intent: str, order_id: str | None, urgency: str) -> str:
    """The answer as the assistant writes it: compact JSON, keys in the order intent, order_id, urgency."""
    return json.dumps({"intent": intent, "order_id": order_id, "urgency": urgency})


@dataclass(frozen=True)
class _Example:
    user: str
    intent: str
    order_id: str | None
    urgency: str
    customer: str
    channel: str

    @property
    def answer(self) -> str:
        return answer_json(self.intent, self.order_id, self.urgency)


def _record(user: str, answer: str | None, customer: str, channel: str, user_role: str = "user") -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": user_role, "content": user}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return {"messages": messages, GROUP_KEY: customer, SLICE_KEY: channel}


def _line(record: dict[str, Any], encoding: str = "utf-8") -> bytes:
    return json.dumps(record, ensure_ascii=False).encode(encoding)


def _typo(text: str, rng: np.random.Generator) -> str:
    """Swap two neighbouring letters inside one longer word (never inside an order id or a cue: they come later)."""
    words = text.split(" ")
    long_words = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
    if not long_words:
        return text
    i = int(rng.choice(long_words))
    w = words[i]
    j = int(rng.integers(1, len(w) - 2))
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def _order_surface(rng: np.random.Generator) -> tuple[str, str]:
    """(surface form, canonical id) of a fresh order number."""
    letter, digits = str(rng.choice(list(_ID_LETTERS))), f"{int(rng.integers(10000, 100000))}"
    form = int(rng.integers(0, 4))
    surface = [f"#{letter}{digits}", f"{letter}-{digits}", f"{letter.lower()}{digits}", f"{letter}{digits}"][form]
    return surface, letter + digits


def _fill(template: str, rng: np.random.Generator) -> tuple[str, str | None]:
    text, order_id = template, None
    if "{order}" in text:
        surface, order_id = _order_surface(rng)
        text = text.replace("{order}", surface)
    for slot, values in _SLOTS.items():
        while "{" + slot + "}" in text:
            text = text.replace("{" + slot + "}", str(rng.choice(values)), 1)
    return text, order_id


def _with_cue(body: str, urgency: str, rng: np.random.Generator) -> str:
    if urgency == "normal":
        return str(rng.choice(_OPENERS)) + body + str(rng.choice(_CLOSERS))
    cues = _CUES[urgency]
    if rng.random() < 0.4:
        return str(rng.choice(cues["before"])) + body + str(rng.choice(_CLOSERS))
    return str(rng.choice(_OPENERS)) + body + str(rng.choice(cues["after"]))


def _casing(text: str, rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.35:
        return text[0].upper() + text[1:]
    if r < 0.38:
        return text.upper()
    return text


def _message(template: str, urgency: str, rng: np.random.Generator) -> tuple[str, str | None]:
    body, order_id = _fill(template, rng)
    if rng.random() < 0.08:
        body = _typo(body, rng)
    return _casing(_with_cue(body, urgency, rng), rng), order_id


def _examples(
    n: int,
    templates: dict[str, list[str]],
    weights: np.ndarray,
    rng: np.random.Generator,
    taken: set[str],
    customers: tuple[int, int],
    channel_p: list[float],
) -> list[_Example]:
    """``n`` examples with prompts unseen in ``taken`` (which they are added to)."""
    names = list(templates)
    out = []
    for intent in rng.choice(names, size=n, p=weights):
        urgency = str(rng.choice(URGENCIES, p=_URGENCY_P))
        for _ in range(50):
            user, order_id = _message(str(rng.choice(templates[intent])), urgency, rng)
            if user not in taken:
                break
        else:  # this intent's template space is exhausted: a reference number keeps the prompt unique
            user = f"{user} (ref {len(taken)})"
        taken.add(user)
        customer = f"C{int(rng.integers(*customers)):05d}"
        out.append(_Example(user, str(intent), order_id, urgency, customer, str(rng.choice(_CHANNELS, p=channel_p))))
    return out


def _weights(n: int, rng: np.random.Generator, skew: float) -> np.ndarray:
    w = np.exp(skew * rng.standard_normal(n))
    return w / w.sum()


def _good_line(e: _Example) -> bytes:
    return _line(_record(e.user, e.answer, e.customer, e.channel))


def _other_intent(intent: str, rng: np.random.Generator) -> str:
    return str(rng.choice([x for x in INTENTS if x != intent]))


def _planted_lines(
    bad: list[_Example], dup_src: list[_Example], conflict_src: list[_Example], rng: np.random.Generator
) -> tuple[list[bytes], dict[str, int]]:
    """Week 1's bad lines: from ``bad`` (examples used nowhere else: k broken, k with an unknown role, k empty, k
    without the answer, one non-UTF-8) and from copies of good examples (``dup_src``, ``conflict_src``, k each)."""
    k = len(dup_src)
    broken_src, role_src, empty_src, missing_src, latin1_src = (bad[i * k : (i + 1) * k] for i in range(5))
    broken = [_good_line(e)[: len(_good_line(e)) // 2] for e in broken_src]  # cut mid-line: not valid JSON
    unknown_role = [_line(_record(e.user, e.answer, e.customer, e.channel, user_role="customer")) for e in role_src]
    empty = [_line(_record(" " * int(rng.integers(0, 3)), e.answer, e.customer, e.channel)) for e in empty_src]
    missing = [_line(_record(e.user, None, e.customer, e.channel)) for e in missing_src]
    # Latin-1 bytes (an e acute in a sign-off): the line is not valid UTF-8; every other line is ASCII
    latin1 = [_line(_record(e.user + " regards, Jos\u00e9", e.answer, e.customer, e.channel), "latin-1")
              for e in latin1_src[:1]]  # fmt: skip
    duplicates = [_good_line(e) for e in dup_src]
    conflicts = [
        _line(_record(e.user, answer_json(_other_intent(e.intent, rng), e.order_id, e.urgency), e.customer, e.channel))
        for e in conflict_src
    ]
    planted = {
        "unparseable": len(broken),
        "unknown_role": len(unknown_role),
        "empty_content": len(empty),
        "missing_answer": len(missing),
        "exact_duplicates": len(duplicates),
        "conflicting_duplicates": 2 * len(conflicts),
        "non_utf8": len(latin1),
    }
    return broken + unknown_role + empty + missing + latin1 + duplicates + conflicts, planted


def generate_week1(n_rows: int = 400, seed: int = 0, bad_per_reason: int = 3) -> ChatBatch:
    """Week 1: ``n_rows`` lines, the 7 intents of :data:`INTENTS`, ``bad_per_reason`` planted lines per reason (one
    non-UTF-8 line). ``planted`` keys: see the module docstring."""
    rng = np.random.default_rng(seed)
    k = bad_per_reason
    n_extra = 6 * k + 1  # k each: broken, unknown role, empty, no answer, duplicate, conflict; one non-UTF-8 line
    if k < 1 or n_rows < n_extra + 20:
        raise ValueError(f"week 1 needs bad_per_reason >= 1 and at least {n_extra + 20} rows, got {k}, {n_rows}")
    taken: set[str] = set()
    uniform = np.full(len(INTENTS), 1 / len(INTENTS))
    customers = (0, max(10, n_rows // 3))
    good = _examples(n_rows - n_extra, INTENTS, _weights(len(INTENTS), rng, 0.3), rng, taken, customers,
                     [0.45, 0.35, 0.20])  # fmt: skip
    bad = _examples(4 * k + 1, INTENTS, uniform, rng, taken, customers, [1 / 3] * 3)
    picks = rng.permutation(len(good))
    dup_src, conflict_src = [good[i] for i in picks[:k]], [good[i] for i in picks[k : 2 * k]]
    planted_lines, planted = _planted_lines(bad, dup_src, conflict_src, rng)
    lines = [_good_line(e) for e in good] + planted_lines
    return ChatBatch([lines[i] for i in rng.permutation(len(lines))], planted)


def _week1_examples(week1: ChatBatch) -> list[_Example]:
    """The good single-answer conversations of a week-1 batch, read back from its lines."""
    out, seen = [], {}
    for raw in week1.lines:
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        messages = record["messages"]
        if [m["role"] for m in messages] != ["system", "user", "assistant"] or not messages[1]["content"].strip():
            continue
        answer = json.loads(messages[2]["content"])
        seen.setdefault(messages[1]["content"], set()).add(messages[2]["content"])
        out.append(
            _Example(messages[1]["content"], answer["intent"], answer["order_id"], answer["urgency"],
                     record[GROUP_KEY], record[SLICE_KEY])
        )  # fmt: skip
    return [e for e in dict.fromkeys(out) if len(seen[e.user]) == 1]


def generate_week2(week1: ChatBatch, n_rows: int = 200, seed: int = 1) -> ChatBatch:
    """Week 2: ``n_rows`` lines; about 20% of the new intent, the rest the old intents in a shifted mix; a few
    week-1 prompts again with the same answer; two empty user turns. ``planted``: new_intent, new_intent_rows,
    repeats_of_week1, empty_content."""
    rng = np.random.default_rng(seed)
    old = _week1_examples(week1)
    n_repeat, n_empty = max(2, n_rows // 40), 2
    templates = {**INTENTS, NEW_INTENT: _NEW_TEMPLATES}
    weights = _weights(len(templates), rng, 0.5)
    weights[-1] = 0.2 / 0.8 * weights[:-1].sum()  # the new intent: 20% of the batch
    n_good = n_rows - n_repeat - n_empty
    customers = (50_000, 50_000 + max(10, n_rows // 3))
    good = _examples(n_good, templates, weights / weights.sum(), rng, {e.user for e in old}, customers,
                     [0.2, 0.5, 0.3])  # fmt: skip
    repeats = [old[i] for i in rng.choice(len(old), size=n_repeat, replace=False)]
    empty = [_line(_record("", answer_json("track_order", None, "normal"), "C50000", "chat")) for _ in range(n_empty)]
    lines = [_good_line(e) for e in good + repeats] + empty
    planted = {
        "new_intent": NEW_INTENT,
        "new_intent_rows": sum(e.intent == NEW_INTENT for e in good),
        "repeats_of_week1": n_repeat,
        "empty_content": n_empty,
    }
    return ChatBatch([lines[i] for i in rng.permutation(len(lines))], planted)


def careless_batch(week2: ChatBatch) -> CarelessBatch:
    """Week 2's good conversations (same prompts, same order) with corrupted answers: the intents of
    :data:`CARELESS_INTENT_SWAP` swapped for each other, urgency high and low swapped. Lines that do not hold one
    clean answer (the empty turns) are left out."""
    a, b = CARELESS_INTENT_SWAP
    hi, lo = CARELESS_URGENCY_SWAP
    swap_intent, swap_urgency = {a: b, b: a}, {hi: lo, lo: hi}
    lines, counts = [], {"intent_swapped": 0, "urgency_swapped": 0, "unchanged": 0}
    for raw in week2.lines:
        record = json.loads(raw.decode("utf-8"))
        messages = record["messages"]
        if not messages[1]["content"].strip():
            continue
        answer = json.loads(messages[2]["content"])
        intent = swap_intent.get(answer["intent"], answer["intent"])
        urgency = swap_urgency.get(answer["urgency"], answer["urgency"])
        counts["intent_swapped"] += intent != answer["intent"]
        counts["urgency_swapped"] += urgency != answer["urgency"]
        counts["unchanged"] += intent == answer["intent"] and urgency == answer["urgency"]
        messages[2]["content"] = answer_json(intent, answer["order_id"], urgency)
        lines.append(_line(record))
    return CarelessBatch(lines, counts)


def _write_lines(path: Path, lines: list[bytes]) -> Path:
    return atomic_write_bytes(path, b"".join(line + b"\n" for line in lines))


def write_generation_demo(
    folder: str | Path, *, seed: int = 0, week1_rows: int = 400, week2_rows: int = 200, careless: bool = False
) -> DemoChatFiles:
    """Write ``week1.jsonl`` and ``week2.jsonl`` (and with ``careless`` ``week2_careless.jsonl``) into ``folder``.

    Lines are ``{"messages": [system, user, assistant], "customer_id": ..., "channel": ...}``; the same seed
    writes the same bytes."""
    folder = Path(folder)
    week1 = generate_week1(week1_rows, seed)
    week2 = generate_week2(week1, week2_rows, seed + 1)
    p1 = _write_lines(folder / "week1.jsonl", week1.lines)
    p2 = _write_lines(folder / "week2.jsonl", week2.lines)
    bad = careless_batch(week2) if careless else None
    return DemoChatFiles(
        p1,
        p2,
        len(week1.lines),
        len(week2.lines),
        week1.planted,
        week2.planted,
        _write_lines(folder / "week2_careless.jsonl", bad.lines) if bad else None,
        bad.corrupted if bad else {},
    )
