"""A synthetic customer-support intent task with known, planted problems (for the demo and the tests).

Week 1: 12 intents phrased through templates x slots x openers/closers, with typos and casing noise; a
``customer_id`` group column and a ``channel`` slice column (email/chat/phone). Planted: exact duplicates,
conflicting duplicates (same text, another intent), flipped labels (noise), and malformed rows (empty text,
a label spelling variant such as ``"Refund_Request "``, a missing label). The ``planted`` dict counts
them with
the same keys the check reports in ``report["found_counts"]``, so found and planted can be printed side
by side.

Week 2 (:func:`generate_next_week`): a new intent, a shifted intent and channel mix, some texts repeated from
week 1 and a few week-1 texts relabelled (corrections of planted noise).

Both weeks carry a ``region`` column (north/south/east, from a hash of the text, so copies of a text share it) with
a planted fairness gap: the texts of :data:`HARD_REGION` are terse and noisy (about a third of their words
dropped and a typo added), so a model really does worse there (``harder_rows`` counts them). The texts are
changed after the rest is drawn, from a hash of each text, so every other planted problem and count stays as it was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keepfit._io import atomic_write_text

__all__ = [
    "DemoData",
    "DemoFiles",
    "HARD_REGION",
    "INTENTS",
    "NEW_INTENT",
    "generate_demo_data",
    "generate_next_week",
    "write_demo_files",
]

TEXT_COLUMN, LABEL_COLUMN, GROUP_COLUMN, SLICE_COLUMN = "text", "intent", "customer_id", "channel"
REGION_COLUMN, HARD_REGION = "region", "east"
_REGION_SHARES = (("north", 0.40), ("south", 0.35), (HARD_REGION, 0.25))
_DROP_WORD = 0.3  # the hard region's texts lose about a third of their words

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
    ],
    "order": [str(n) for n in range(10234, 99999, 7919)],
    "day": ["monday", "tuesday", "yesterday", "last week", "friday", "two days ago", "the weekend"],
    "amount": ["$19.99", "$45", "$120", "$8.50", "$230", "$64.20"],
    "city": ["Berlin", "Leeds", "Austin", "Lyon", "Porto", "Denver", "Oslo"],
}

INTENTS: dict[str, list[str]] = {
    "refund_request": [
        "i want a refund for my {item}",
        "can i get my money back for the {item}",
        "please refund order {order}",
        "how do i get a refund for order {order}",
        "i returned the {item} {day} and still have no refund",
        "requesting a refund of {amount}",
        "when will my refund for the {item} arrive",
        "refund my purchase please, the {item} was not what i wanted",
    ],
    "order_status": [
        "where is my order {order}",
        "has my {item} shipped yet",
        "track order {order}",
        "what is the status of my order {order}",
        "my {item} has not arrived, where is it",
        "when will order {order} be delivered",
        "i ordered a {item} {day}, any update on shipping",
    ],
    "cancel_order": [
        "cancel my order {order}",
        "i want to cancel the {item} i ordered {day}",
        "please stop order {order} before it ships",
        "how can i cancel an order",
        "i changed my mind, cancel the {item}",
        "cancel order {order} immediately",
    ],
    "change_address": [
        "i need to change my delivery address",
        "update the shipping address for order {order}",
        "i moved to {city}, please change my address",
        "can you send the {item} to a different address",
        "wrong address on order {order}, please fix it",
        "how do i edit my address before delivery",
    ],
    "card_lost": [
        "i lost my credit card",
        "my card was stolen {day}",
        "please block my card, it is lost",
        "someone stole my wallet with my card",
        "i cannot find my card, freeze it please",
        "report a lost card",
        "my card went missing in {city}",
    ],
    "payment_failed": [
        "my payment of {amount} was declined",
        "the payment failed when buying the {item}",
        "why was my card declined for {amount}",
        "checkout keeps failing at payment",
        "i was charged but the payment shows failed",
        "payment error on order {order}",
    ],
    "account_login": [
        "i cannot log in to my account",
        "forgot my password",
        "reset my password please",
        "my account is locked",
        "the login page says invalid password",
        "i can't sign in since {day}",
        "two factor code never arrives when i log in",
    ],
    "delivery_damaged": [
        "my {item} arrived broken",
        "the package was damaged on delivery",
        "the {item} came with a crack",
        "box was crushed and the {item} is damaged",
        "received a damaged {item} in order {order}",
        "the {item} is scratched and dented",
    ],
    "subscription_cancel": [
        "cancel my subscription",
        "i want to stop my monthly membership",
        "how do i end my premium plan",
        "stop charging me {amount} every month",
        "unsubscribe me from the membership",
        "end my subscription before the next billing",
    ],
    "invoice_request": [
        "i need an invoice for order {order}",
        "send me a receipt for the {item}",
        "can i get a vat invoice for {amount}",
        "where do i download my invoice",
        "please email the invoice for my purchase {day}",
        "i need a copy of the bill for order {order}",
    ],
    "product_question": [
        "is the {item} waterproof",
        "does the {item} come in other colours",
        "what size is the {item}",
        "is the {item} in stock in {city}",
        "how long is the warranty on the {item}",
        "can the {item} be used outdoors",
    ],
    "speak_to_agent": [
        "i want to talk to a human",
        "connect me to an agent",
        "can i speak to a real person",
        "transfer me to customer service",
        "stop the bot, i need a person",
        "call me back please, i need an agent",
    ],
}

NEW_INTENT = "crypto_payment"
_NEW_TEMPLATES = [
    "can i pay with bitcoin",
    "do you accept crypto for the {item}",
    "i want to pay {amount} in ethereum",
    "is cryptocurrency accepted at checkout",
    "pay for order {order} with usdt",
    "crypto payment option please",
    "can i use my crypto wallet to buy the {item}",
]

_OPENERS = [
    "",
    "",
    "",
    "",
    "hi, ",
    "hello, ",
    "hey ",
    "good morning, ",
    "excuse me, ",
    "hi team, ",
    "quick question: ",
    "sorry to bother you, ",
    "dear support, ",
    "this is urgent: ",
    "hello again, ",
    "i wrote before, ",
    "not happy here, ",
    "hope you can help, ",
]
_CLOSERS = [
    "",
    "",
    "",
    "",
    " thanks",
    " please",
    " thank you!",
    " asap",
    "?",
    ".",
    " this is the second time i ask",
    " let me know what to do",
    " my name is on the account",
    " any help appreciated",
    " i am waiting",
    " sent from my phone",
    " cheers",
    " kind regards, sam",
    " need this sorted today",
]
_CHANNELS = ["email", "chat", "phone"]


@dataclass(frozen=True)
class DemoData:
    """A generated batch (columns text, intent, customer_id, channel), the counts of what was planted, and the
    CSV line numbers of the rows whose label was flipped (week 1)."""

    frame: pd.DataFrame
    planted: dict[str, Any]
    noisy_rows: list[int] = field(default_factory=list)
    harder_rows: int = 0  # rows of HARD_REGION whose text was made terse and noisy (the planted fairness gap)


@dataclass(frozen=True)
class DemoFiles:
    """The files :func:`write_demo_files` wrote, their row counts and the planted counts."""

    week1: Path
    week2: Path
    week1_rows: int
    week2_rows: int
    planted_week1: dict[str, Any]
    planted_week2: dict[str, Any]
    noisy_rows_week1: tuple[int, ...] = ()  # CSV line numbers of week 1's flipped labels
    harder_rows_week1: int = 0  # week 1's rows of HARD_REGION made terse and noisy


def _typo(text: str, rng: np.random.Generator) -> str:
    words = text.split(" ")
    long_words = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
    if not long_words:
        return text
    i = int(rng.choice(long_words))
    w = words[i]
    j = int(rng.integers(1, len(w) - 2))
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def _phrase(template: str, rng: np.random.Generator) -> str:
    text = template
    for slot, values in _SLOTS.items():
        while "{" + slot + "}" in text:
            text = text.replace("{" + slot + "}", str(rng.choice(values)), 1)
    text = str(rng.choice(_OPENERS)) + text + str(rng.choice(_CLOSERS))
    if rng.random() < 0.08:
        text = _typo(text, rng)
    r = rng.random()
    if r < 0.35:
        text = text[0].upper() + text[1:]
    elif r < 0.38:
        text = text.upper()
    return text


def _hashed(text: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{text}".encode()).digest()[:8], "big")


def _region_of(text: str) -> str:
    u = _hashed(text, "region") / 2**64
    for region, share in _REGION_SHARES:
        if u < share:
            return region
        u -= share
    return _REGION_SHARES[-1][0]


def _terse(text: str) -> str:
    """The hard region's version of a text: about half its words dropped, and a typo (seeded by the text)."""
    rng = np.random.default_rng(_hashed(text, "terse"))
    words = text.split()
    kept = [w for w in words if rng.random() >= _DROP_WORD] or words[-1:]
    return _typo(" ".join(kept), rng)


def _key(text: str) -> str:
    """What the data check treats as the same text (case, spaces and punctuation aside)."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _with_regions(frame: pd.DataFrame, avoid: set[str]) -> tuple[pd.DataFrame, int]:
    """``frame`` with its region column and the hard region's texts made terse; a terse text that would read as
    another text of ``frame`` (or of ``avoid``, keys of :func:`_key`) keeps its original, so no duplicate is added.
    Returns the frame and how many rows changed."""
    texts = frame[TEXT_COLUMN].astype(str)
    regions = texts.map(_region_of)
    taken = {_key(t) for t in texts} | avoid
    terse: dict[str, str] = {}
    for text in sorted(set(texts[regions == HARD_REGION])):
        short = _terse(text) if text.strip() else text
        if short != text and _key(short) and _key(short) not in taken:
            terse[text] = short
            taken.add(_key(short))
    changed = texts.map(lambda t: terse.get(t, t))
    return frame.assign(**{TEXT_COLUMN: changed, REGION_COLUMN: regions}), int((changed != texts).sum())


def _unique_phrases(
    templates: dict[str, list[str]], labels: np.ndarray, rng: np.random.Generator, taken: set[str]
) -> list[str]:
    out = []
    for label in labels:
        for _ in range(50):
            text = _phrase(str(rng.choice(templates[label])), rng)
            if text not in taken:
                break
        else:  # the template space is exhausted for this intent: make the phrase unique with a number
            text = f"{text} (ref {len(taken)})"
        taken.add(text)
        out.append(text)
    return out


def _intent_weights(names: list[str], rng: np.random.Generator, skew: float) -> np.ndarray:
    w = np.exp(skew * rng.standard_normal(len(names)))
    return w / w.sum()


def _base_rows(
    n: int,
    templates: dict[str, list[str]],
    weights: np.ndarray,
    channel_p: list[float],
    rng: np.random.Generator,
    taken: set[str],
    n_customers: int,
    customer_offset: int,
) -> pd.DataFrame:
    names = list(templates)
    labels = rng.choice(names, size=n, p=weights)
    texts = _unique_phrases(templates, labels, rng, taken)
    return pd.DataFrame(
        {
            TEXT_COLUMN: texts,
            LABEL_COLUMN: labels,
            GROUP_COLUMN: [f"C{customer_offset + int(c):05d}" for c in rng.integers(0, n_customers, size=n)],
            SLICE_COLUMN: rng.choice(_CHANNELS, size=n, p=channel_p),
        }
    )


def _other_label(label: str, names: list[str], rng: np.random.Generator) -> str:
    return str(rng.choice([x for x in names if x != label]))


def generate_demo_data(n_rows: int = 2000, seed: int = 0) -> DemoData:
    """Week 1: about ``n_rows`` rows of support tickets with planted problems (see the module docstring).

    ``planted`` keys: exact_duplicates (extra copies), conflicting_duplicates (rows whose text carries two
    intents, all copies), noisy_labels (flipped, not detectable without a model), empty_text, unknown_label,
    missing_label (malformed rows). ``noisy_rows`` holds the CSV line numbers of the flipped rows.
    """
    rng = np.random.default_rng(seed)
    names = list(INTENTS)
    n_dup = max(2, round(0.02 * n_rows))
    n_conflict = max(2, round(0.005 * n_rows))
    n_noise = max(2, round(0.02 * n_rows))
    n_bad = 3
    n_base = n_rows - n_dup - n_conflict - 3 * n_bad
    taken: set[str] = set()
    base = _base_rows(
        n_base,
        INTENTS,
        _intent_weights(names, rng, 0.35),
        [0.45, 0.35, 0.20],
        rng,
        taken,
        max(10, n_rows // 3),
        0,
    )
    picks = rng.permutation(n_base)
    noisy, dup_src, conflict_src = (
        picks[:n_noise],
        picks[n_noise : n_noise + n_dup],
        picks[n_noise + n_dup : n_noise + n_dup + n_conflict],
    )
    true_labels = base[LABEL_COLUMN].copy()
    base.loc[noisy, LABEL_COLUMN] = [_other_label(x, names, rng) for x in base.loc[noisy, LABEL_COLUMN]]
    dups = base.loc[dup_src].copy()
    conflicts = base.loc[conflict_src].copy()
    conflicts[LABEL_COLUMN] = [_other_label(x, names, rng) for x in conflicts[LABEL_COLUMN]]
    bad_texts = _unique_phrases(INTENTS, rng.choice(names, size=2 * n_bad), rng, taken)
    variant = names[0].title() + " "  # "Refund_Request ": case and whitespace variant of a known intent
    malformed = pd.DataFrame(
        {
            TEXT_COLUMN: ["", "   ", "\t"][:n_bad] + bad_texts[:n_bad] + bad_texts[n_bad:],
            LABEL_COLUMN: list(rng.choice(names, size=n_bad)) + [variant] * n_bad + [""] * n_bad,
            GROUP_COLUMN: [f"C{int(c):05d}" for c in rng.integers(0, max(10, n_rows // 3), size=3 * n_bad)],
            SLICE_COLUMN: rng.choice(_CHANNELS, size=3 * n_bad),
        }
    )
    frame = pd.concat([base, dups, conflicts, malformed], ignore_index=True)
    order = rng.permutation(len(frame))
    frame, harder = _with_regions(frame.iloc[order].reset_index(drop=True), set())
    # CSV line numbers (header is line 1) of the noisy rows, so a model's suspects can be compared with them
    noisy_lines = sorted(int(np.flatnonzero(order == i)[0]) + 2 for i in noisy)
    planted = {
        "exact_duplicates": int(n_dup),
        "conflicting_duplicates": int(2 * n_conflict),
        "noisy_labels": int((base.loc[noisy, LABEL_COLUMN] != true_labels.loc[noisy]).sum()),
        "empty_text": n_bad,
        "unknown_label": n_bad,
        "missing_label": n_bad,
    }
    return DemoData(frame, planted, noisy_lines, harder)


def generate_next_week(week1: pd.DataFrame, n_rows: int = 600, seed: int = 1) -> DemoData:
    """Week 2: a new intent (``crypto_payment``), a shifted intent and channel mix, some week-1 texts again
    (same label) and a few relabelled. ``planted``: new_intent, new_intent_rows, repeats_of_week1,
    relabelled_from_week1, empty_text."""
    rng = np.random.default_rng(seed)
    templates = {**INTENTS, NEW_INTENT: _NEW_TEMPLATES}
    names = list(templates)
    weights = _intent_weights(names, np.random.default_rng(seed + 100), 0.8)
    weights[-1] = 0.15 / (1 - 0.15) * weights[:-1].sum()
    weights = weights / weights.sum()
    n_repeat, n_relabel, n_empty = max(2, n_rows // 30), max(1, n_rows // 120), 2
    n_base = n_rows - n_repeat - n_relabel - n_empty
    valid = week1[(week1[TEXT_COLUMN].str.strip() != "") & week1[LABEL_COLUMN].isin(list(INTENTS))]
    valid = valid.drop_duplicates(TEXT_COLUMN, keep=False)
    taken = set(week1[TEXT_COLUMN])
    base = _base_rows(n_base, templates, weights, [0.2, 0.6, 0.2], rng, taken, max(10, n_rows // 3), 50_000)
    base, harder = _with_regions(base, {_key(t) for t in week1[TEXT_COLUMN].astype(str)})
    picked = valid.iloc[rng.choice(len(valid), size=n_repeat + n_relabel, replace=False)]
    repeats = picked.iloc[:n_repeat].copy()
    relabels = picked.iloc[n_repeat:].copy()
    relabels[LABEL_COLUMN] = [_other_label(x, list(INTENTS), rng) for x in relabels[LABEL_COLUMN]]
    empty = pd.DataFrame(
        {
            TEXT_COLUMN: [""] * n_empty,
            LABEL_COLUMN: ["order_status"] * n_empty,
            GROUP_COLUMN: ["C50000"] * n_empty,
            SLICE_COLUMN: ["chat"] * n_empty,
            REGION_COLUMN: ["north"] * n_empty,
        }
    )
    frame = pd.concat([base, repeats, relabels, empty], ignore_index=True)
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    planted = {
        "new_intent": NEW_INTENT,
        "new_intent_rows": int((base[LABEL_COLUMN] == NEW_INTENT).sum()),
        "repeats_of_week1": int(n_repeat),
        "relabelled_from_week1": int(n_relabel),
        "empty_text": n_empty,
    }
    return DemoData(frame, planted, harder_rows=harder)


def write_demo_files(folder: str | Path, *, small: bool = False, seed: int = 0) -> DemoFiles:
    """Write ``week1.csv`` and ``week2.csv`` into ``folder`` (2,000 and 600 rows; 800 and 300 with
    ``small``)."""
    folder = Path(folder)
    n1, n2 = (800, 300) if small else (2000, 600)
    week1 = generate_demo_data(n1, seed)
    week2 = generate_next_week(week1.frame, n2, seed + 1)
    p1 = atomic_write_text(folder / "week1.csv", week1.frame.to_csv(index=False))
    p2 = atomic_write_text(folder / "week2.csv", week2.frame.to_csv(index=False))
    return DemoFiles(
        p1, p2, len(week1.frame), len(week2.frame), week1.planted, week2.planted, tuple(week1.noisy_rows),
        week1.harder_rows,
    )
