"""The generated text-generation demo: seeded, planted problems counted right (the files are parsed here, not
through keepfit), answers exact JSON with a fixed key order, order ids canonical, week 2 and the careless batch
as described."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from keepfit.data.demo_chat import (
    CARELESS_INTENT_SWAP,
    INTENTS,
    NEW_INTENT,
    SYSTEM_PROMPT,
    URGENCIES,
    answer_json,
    canonical_order_id,
    write_generation_demo,
)

ROLES = {"system", "user", "assistant"}
# the test's own reading of an order number in a message: optional '#', a letter, optional '-', five digits
ORDER = re.compile(r"(?<![A-Za-z0-9])#?([A-Za-z])-?(\d{5})(?![0-9])")
HIGH_CUES = ("asap", "urgent", "today", "as soon as possible")
LOW_CUES = ("no rush", "whenever", "no hurry", "low priority")


def _parse(path: Path) -> dict[str, list]:
    """Sort the file's lines into the planted kinds, and the good conversations (``good``: (prompt, answer,
    record) for lines with a system, a user and a final assistant turn, all non-empty)."""
    kinds: dict[str, list] = defaultdict(list)
    for raw in path.read_bytes().split(b"\n")[:-1]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            kinds["non_utf8"].append(raw)
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            kinds["unparseable"].append(raw)
            continue
        messages = record["messages"]
        roles = [m["role"] for m in messages]
        if not set(roles) <= ROLES:
            kinds["unknown_role"].append(record)
        elif any(not m["content"].strip() for m in messages):
            kinds["empty_content"].append(record)
        elif roles[-1] != "assistant":
            kinds["missing_answer"].append(record)
        else:
            kinds["good"].append((json.dumps(messages[:-1]), messages[-1]["content"], record))
    return kinds


def _good_answers(kinds: dict[str, list]) -> list[tuple[str, dict, dict]]:
    """(user message, parsed answer, record) of every good line."""
    return [(r["messages"][1]["content"], json.loads(answer), r) for _, answer, r in kinds["good"]]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_generation_demo(tmp_path_factory.mktemp("chat"), careless=True)


def test_generation_is_seeded(tmp_path):
    a = write_generation_demo(tmp_path / "a", seed=3, week1_rows=120, week2_rows=60)
    b = write_generation_demo(tmp_path / "b", seed=3, week1_rows=120, week2_rows=60)
    c = write_generation_demo(tmp_path / "c", seed=4, week1_rows=120, week2_rows=60)
    assert a.week1.read_bytes() == b.week1.read_bytes() and a.week2.read_bytes() == b.week2.read_bytes()
    assert a.week1.read_bytes() != c.week1.read_bytes()
    assert a.planted_week1 == b.planted_week1 and a.careless is None


def test_planted_counts_match_the_file(files):
    kinds = _parse(files.week1)
    planted = files.planted_week1
    assert len(files.week1.read_bytes().split(b"\n")[:-1]) == files.week1_rows == 400
    for reason in ("non_utf8", "unparseable", "unknown_role", "empty_content", "missing_answer"):
        assert len(kinds[reason]) == planted[reason] >= 1, reason
    assert planted["non_utf8"] == 1 and planted["unparseable"] == 3
    lines = Counter(line for _, _, r in kinds["good"] for line in [json.dumps(r)])
    assert sum(n - 1 for n in lines.values()) == planted["exact_duplicates"] == 3
    answers: dict[str, set[str]] = defaultdict(set)
    copies: Counter[str] = Counter()
    for prompt, answer, _ in kinds["good"]:
        answers[prompt].add(answer)
        copies[prompt] += 1
    conflicting = sum(copies[p] for p, a in answers.items() if len(a) > 1)
    assert conflicting == planted["conflicting_duplicates"] == 6
    # every line is one good conversation or one planted problem
    extras = planted["exact_duplicates"] + planted["conflicting_duplicates"] // 2
    assert len({p for p, _, _ in kinds["good"]}) == len(kinds["good"]) - extras


def test_answers_are_exact_json_in_a_fixed_key_order(files):
    kinds = _parse(files.week1)
    assert len(kinds["good"]) > 350
    for _, answer, record in kinds["good"]:
        parsed = json.loads(answer)
        assert list(parsed) == ["intent", "order_id", "urgency"]
        assert answer == answer_json(**parsed)  # byte-exact: one serialisation
        assert parsed["intent"] in INTENTS and parsed["urgency"] in URGENCIES
        assert record["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
        assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
        assert set(record) == {"messages", "customer_id", "channel"}
    intents = Counter(a["intent"] for _, a, _ in _good_answers(kinds))
    assert set(intents) == set(INTENTS) and len(INTENTS) == 7 and min(intents.values()) >= 25
    assert NEW_INTENT not in intents
    assert set(Counter(a["urgency"] for _, a, _ in _good_answers(kinds))) == set(URGENCIES)
    assert "intent, order_id, urgency" in SYSTEM_PROMPT and NEW_INTENT in SYSTEM_PROMPT


def test_order_ids_are_normalised():
    assert canonical_order_id("#K20417") == canonical_order_id("k-20417") == canonical_order_id("K20417") == "K20417"
    assert canonical_order_id(" a12345 ") == "A12345"
    with pytest.raises(ValueError, match="not an order id"):
        canonical_order_id("order 12345")


def test_every_answer_carries_the_order_id_of_its_message(files):
    forms: Counter[str] = Counter()
    for message, answer, _ in _good_answers(_parse(files.week1)):
        found = ORDER.findall(message)
        if answer["order_id"] is None:
            assert not found, message
            continue
        assert len(found) == 1, message
        letter, digits = found[0]
        assert answer["order_id"] == letter.upper() + digits
        surface = ORDER.search(message).group(0)
        kind = "#" if surface.startswith("#") else "-" if "-" in surface else "lower" if letter.islower() else "bare"
        forms[kind] += 1
    assert set(forms) == {"#", "-", "lower", "bare"}  # several surface forms, one canonical answer
    assert sum(forms.values()) > 100


def test_urgency_follows_the_cues(files):
    for message, answer, _ in _good_answers(_parse(files.week1)):
        lower = message.lower()
        high, low = any(c in lower for c in HIGH_CUES), any(c in lower for c in LOW_CUES)
        assert (high, low) == {"high": (True, False), "low": (False, True), "normal": (False, False)}[
            answer["urgency"]
        ], message


def test_week2_brings_the_new_intent_and_keeps_the_old(files):
    kinds = _parse(files.week2)
    assert files.week2_rows == 200 and len(files.week2.read_bytes().split(b"\n")[:-1]) == 200
    assert len(kinds["empty_content"]) == files.planted_week2["empty_content"] == 2
    assert not (kinds["non_utf8"] or kinds["unparseable"] or kinds["unknown_role"] or kinds["missing_answer"])
    intents = Counter(a["intent"] for _, a, _ in _good_answers(kinds))
    assert files.planted_week2["new_intent"] == NEW_INTENT
    assert intents[NEW_INTENT] == files.planted_week2["new_intent_rows"] >= 25
    assert set(INTENTS) <= set(intents)  # the earlier test set still measures the old skills
    week1 = {p: a for p, a, _ in _parse(files.week1)["good"]}
    repeated = [(p, a) for p, a, _ in kinds["good"] if p in week1]
    assert len(repeated) == files.planted_week2["repeats_of_week1"] >= 2
    assert all(week1[p] == a for p, a in repeated)


def test_the_careless_batch_swaps_two_intents_and_urgency(files):
    clean = [(p, json.loads(a)) for p, a, _ in _parse(files.week2)["good"]]
    careless = [(p, json.loads(a)) for p, a, _ in _parse(files.careless)["good"]]
    assert [p for p, _ in careless] == [p for p, _ in clean]  # same prompts, same order
    a, b = CARELESS_INTENT_SWAP
    swapped = Counter()
    for (_, good), (_, bad) in zip(clean, careless, strict=True):
        assert bad["order_id"] == good["order_id"]
        assert bad["intent"] == {a: b, b: a}.get(good["intent"], good["intent"])
        assert bad["urgency"] == {"high": "low", "low": "high"}.get(good["urgency"], "normal")
        swapped["intent"] += bad["intent"] != good["intent"]
        swapped["urgency"] += bad["urgency"] != good["urgency"]
    assert swapped["intent"] == files.corrupted_careless["intent_swapped"] >= 10
    assert swapped["urgency"] == files.corrupted_careless["urgency_swapped"] >= 40


def test_the_intent_is_learnable_from_the_words(files):
    """A bag-of-words model reads the intent off held-out messages: the mapping depends on the message alone."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    rows = _good_answers(_parse(files.week1))
    texts, intents = [m for m, _, _ in rows], [a["intent"] for _, a, _ in rows]
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    model = LinearSVC().fit(vec.fit_transform(texts[:300]), intents[:300])
    accuracy = (model.predict(vec.transform(texts[300:])) == intents[300:]).mean()
    assert accuracy > 0.95
