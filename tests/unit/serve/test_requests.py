"""Request bodies: what is accepted, and the status and words of each refusal."""

from __future__ import annotations

import pytest

from keepfit.config import ServeConfig
from keepfit.serve.requests import BadRequest, parse_feedback, parse_infer, parse_json, parse_predict

LIMITS = ServeConfig(max_texts_per_request=3, max_chars_per_text=10, max_body_bytes=1024, top_k=2)


def _refused(call, status: int, words: str) -> None:
    with pytest.raises(BadRequest) as err:
        call()
    assert err.value.status == status and words in err.value.message


def test_predict_bodies():
    assert parse_predict(["a", "b"], LIMITS).texts == ["a", "b"]
    req = parse_predict({"texts": ["a"], "top_k": 1, "metadata": {"channel": "app"}}, LIMITS)
    assert (req.top_k, req.meta) == (1, [{"channel": "app"}])
    per_text = parse_predict({"texts": ["a", "b"], "metadata": [{"c": "x"}, {"c": "y"}]}, LIMITS)
    assert per_text.meta == [{"c": "x"}, {"c": "y"}]
    _refused(lambda: parse_predict({"texts": ["a", "b"], "metadata": [{"c": "x"}]}, LIMITS), 422, "one per text")
    assert parse_predict({"texts": ["a"]}, LIMITS).top_k == 2
    _refused(lambda: parse_predict({"texts": ["a"] * 4}, LIMITS), 413, "limit is 3")
    _refused(lambda: parse_predict({"texts": ["x" * 11]}, LIMITS), 413, "11 characters")
    _refused(lambda: parse_predict({"texts": [None]}, LIMITS), 422, "NoneType")
    _refused(lambda: parse_predict({"texts": ["a"], "top_k": True}, LIMITS), 422, "top_k")
    _refused(lambda: parse_predict({"texts": ["a"], "metadata": {"k": [1]}}, LIMITS), 422, "metadata")
    _refused(lambda: parse_predict("text", LIMITS), 422, "JSON object")


def test_json_and_size():
    _refused(lambda: parse_json(b"x" * 2000, LIMITS), 413, "2000 bytes")
    _refused(lambda: parse_json(b"{", LIMITS), 400, "not valid JSON")
    _refused(lambda: parse_json(b"\xff\xfe", LIMITS), 400, "not valid JSON")
    assert parse_json(b'{"a": 1}', LIMITS) == {"a": 1}


def test_infer_bodies():
    tensor = {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}
    req = parse_infer({"id": 7, "inputs": [tensor], "parameters": {"top_k": 1}}, LIMITS)
    assert (req.texts, req.request_id, req.top_k) == (["a", "b"], "7", 1)
    nested = parse_infer({"inputs": [{**tensor, "shape": [1, 2], "data": [["a", "b"]]}]}, LIMITS)
    assert nested.texts == ["a", "b"]
    _refused(lambda: parse_infer({"inputs": [tensor, tensor]}, LIMITS), 422, "exactly one input")
    _refused(lambda: parse_infer({"inputs": [{**tensor, "shape": [3]}]}, LIMITS), 422, "holds 3 elements")
    _refused(lambda: parse_infer({"inputs": [{**tensor, "datatype": "INT64"}]}, LIMITS), 422, "BYTES")
    _refused(lambda: parse_infer({"outputs": []}, LIMITS), 422, "inference request")


def test_feedback_bodies():
    assert parse_feedback({"request_id": "r-0", "label": "pos"}) == [("r-0", "pos")]
    assert parse_feedback([{"request_id": "a", "label": "x"}, {"request_id": "b", "label": "y"}]) == [
        ("a", "x"), ("b", "y")]
    _refused(lambda: parse_feedback([]), 422, "empty")
    _refused(lambda: parse_feedback({"request_id": 3, "label": "x"}), 422, "request_id")
    _refused(lambda: parse_feedback([{"request_id": "a", "label": ""}]), 422, "item 0: label")
