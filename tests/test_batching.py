"""Byte-bounded batching: every body is a valid JSON array within the limit, nothing is lost or
reordered, and a row too large for any request comes out on its own as Oversize."""

from __future__ import annotations

import itertools
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nordpass_connector.batching import DEFAULT_MAX_BODY_BYTES, Oversize, body_of, oversize_reason, pack
from nordpass_connector.ports import Batch

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=5,
)
rows_strategy = st.lists(st.dictionaries(st.text(max_size=10), json_value, max_size=4), max_size=25)


def _flatten(items: list[Batch | Oversize]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        out.extend(item.rows if isinstance(item, Batch) else [item.row])
    return out


@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy, limit=st.integers(min_value=3, max_value=600))
def test_bodies_within_limit_and_order_preserved(rows: list[dict[str, Any]], limit: int) -> None:
    items = list(pack(rows, max_body_bytes=limit))
    assert _flatten(items) == rows
    for item in items:
        if isinstance(item, Batch):
            assert len(item.body) <= limit
            assert item.rows, "no empty batches"
            assert json.loads(item.body) == json.loads(json.dumps(item.rows))
        else:
            assert item.size > limit
            assert rows[item.index] is item.row


@settings(max_examples=30, deadline=None)
@given(rows=rows_strategy, limit=st.integers(min_value=50, max_value=2000))
def test_batches_are_greedy(rows: list[dict[str, Any]], limit: int) -> None:
    """A batch is closed only because the next row would not fit (no needlessly small requests)."""
    items = list(pack(rows, max_body_bytes=limit))
    for item, following in itertools.pairwise(items):
        if isinstance(item, Batch) and isinstance(following, Batch):
            first_next = orjson.dumps(following.rows[0]) if _plain(following.rows[0]) else None
            if first_next is not None:
                assert len(item.body) + 1 + len(first_next) > limit


def _plain(row: dict[str, Any]) -> bool:
    try:
        orjson.dumps(row)
    except TypeError:
        return False
    return True


def test_exact_fit_at_the_limit() -> None:
    row = {"k": "x" * 10}
    one = len(orjson.dumps(row))
    limit = 2 + 3 * one + 2  # three rows plus two commas
    items = list(pack([row] * 4, max_body_bytes=limit))
    assert [len(i.rows) for i in items if isinstance(i, Batch)] == [3, 1]
    assert len(items[0].body) == limit  # type: ignore[union-attr]


def test_oversize_row_is_yielded_in_place() -> None:
    small = {"a": 1}
    big = {"a": "x" * 2000}
    items = list(pack([small, big, small], max_body_bytes=1000))
    assert isinstance(items[0], Batch) and items[0].rows == [small]
    assert isinstance(items[1], Oversize) and items[1].index == 1
    assert (
        items[1].reason
        == f"record is {len(orjson.dumps(big)) + 2:,} bytes, over the 1,000-byte request limit"
    )
    assert isinstance(items[2], Batch) and items[2].rows == [small]


def test_reason_wording_for_default_limit() -> None:
    assert oversize_reason(1_234_567, DEFAULT_MAX_BODY_BYTES) == (
        "record is 1,234,567 bytes, over the 1,000,000-byte request limit"
    )


def test_big_integers_fall_back_to_stdlib() -> None:
    row = {"metadata": {"n": 2**70}}
    (batch,) = pack([row])
    assert isinstance(batch, Batch)
    assert json.loads(batch.body) == [row]
    assert body_of([row]) == batch.body


def test_empty_input_yields_nothing() -> None:
    assert list(pack([])) == []


def test_rejects_impossible_limit() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        list(pack([{}], max_body_bytes=2))
