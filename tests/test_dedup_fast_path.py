"""`select_new` maps the common event on a fast path of its own: it must give exactly the rows of
`prepare` + `to_row`, and the ledger keys it hands to `pack` must be exactly `ledger_key(row)`."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nordpass_connector.batching import Oversize, pack
from nordpass_connector.dedup import ledger_key, select_new
from nordpass_connector.ledger import DIGEST_BYTES, Ledger
from nordpass_connector.mapping import PreparedEvent, event_id, fast_row, occurrences, prepare, to_row
from nordpass_connector.ports import Batch
from tests.test_mapping import BASE  # the same documented event the mapping tests start from


class Metadata(dict[str, Any]):
    """A dict that is not exactly a dict: must be treated like one (MSP rule included)."""


ODD: list[Any] = [
    dict(BASE, action=["odd"]),
    dict(BASE, initiator={"id": 3}),
    dict(BASE, type=5, organization_uuid=True),
    dict(BASE, type=None, action=None, initiator=None, organization_uuid=None),
    dict(BASE, extra_field={"os": "ios"}),
    {k: v for k, v in BASE.items() if k != "initiator"},
    dict({k: v for k, v in BASE.items() if k != "initiator"}, device="phone"),  # seven fields, one unknown
    dict(BASE, metadata={"msp": {"user_uuid": "msp-9", "user_email": "msp@partner.example"}}),
    dict(BASE, metadata={"msp": {"user_uuid": "", "user_email": None}}),
    dict(BASE, metadata=Metadata(msp={"user_uuid": "msp-7"})),
    dict(BASE, metadata=None),
    dict(BASE, metadata=["a", {"msp": 1}]),
    dict(BASE, metadata={"n": 2**70}),  # canonical form from the stdlib
    dict(BASE, user=None),
    dict(BASE, user="u-1"),
    dict(BASE, user=["u-1"]),
    dict(BASE, user={"uuid": "u-2"}),
    dict(BASE, user={"uuid": 7, "email": "a@b.c"}),
    dict(BASE, user={"uuid": "u-3", "mail": "a@b.c"}),
    dict(BASE, user={"uuid": "u-4", "email": "a@b.c", "name": "Ann"}),
    dict(BASE, user={"uuid": None, "email": None}),
    dict(BASE, timestamp="1738848414"),
    dict(BASE, timestamp=1738848415.0),
    dict(BASE, timestamp=0),
    dict(BASE, timestamp=59),
    dict(BASE, timestamp=10**11 - 1),
    dict(reversed(list(BASE.items()))),
    {"timestamp": 1738848416},
    # malformed: set aside, never rows
    ["not", "an", "object"],
    dict(BASE, timestamp=1738848413000),
    dict(BASE, timestamp=True),
    {k: v for k, v in BASE.items() if k != "timestamp"},
]


def _ordinary(n: int) -> list[dict[str, Any]]:
    return [
        dict(
            BASE,
            timestamp=BASE["timestamp"] + i // 3,
            user={"uuid": f"u-{i}", "email": f"user{i}@example.com"},
            metadata={"ip_address": f"203.0.113.{i % 250}", "n": i},
        )
        for i in range(n)
    ]


def _reference_rows(events: list[Any], ledger: Ledger) -> list[dict[str, Any]]:
    """What select_new must return, built with the general functions only."""
    prepared = [prepare(raw) for raw in events]
    numbers = occurrences([event.digest[:DIGEST_BYTES] for event in prepared])
    fresh: list[tuple[int, bytes, int, dict[str, Any]]] = []
    for event, occurrence in zip(prepared, numbers, strict=True):
        if occurrence < ledger.count(event.digest) or not isinstance(event, PreparedEvent):
            continue
        fresh.append((event.timestamp, event.digest, occurrence, to_row(event, occurrence)))
    fresh.sort(key=lambda item: item[:3])
    return [row for *_, row in fresh]


def _exact(rows: list[dict[str, Any]]) -> list[list[tuple[str, type, Any]]]:
    """Rows with key order and value types made part of the comparison."""
    return [[(k, type(v), v) for k, v in row.items()] for row in rows]


def test_fast_path_and_general_path_give_the_same_rows() -> None:
    events: list[Any] = _ordinary(40) + ODD + ODD[:5] + [dict(BASE) for _ in range(12)]
    random.Random(3).shuffle(events)
    ledger = Ledger()
    delivered = prepare(BASE)
    assert isinstance(delivered, PreparedEvent)
    ledger.add(delivered.digest, 1738848413, copies=2)  # two of the copies of BASE were sent

    selection = select_new(events, ledger)

    assert _exact(selection.rows) == _exact(_reference_rows(events, ledger))
    assert selection.duplicates == 2
    assert len(selection.malformed) == 4
    assert selection.keys == [ledger_key(row) for row in selection.rows]
    # 13 copies of BASE (one with its keys reversed), two already sent; "-10" sorts after "-9".
    base_id = to_row(delivered, 0)["EventId"][:-2]
    copies = [r["EventId"] for r in selection.rows if r["EventId"].startswith(base_id + "-")]
    assert copies == [f"{base_id}-{n}" for n in range(2, 13)]


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=4))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=4,
)
text_or_odd = st.one_of(st.text(max_size=6), st.none(), json_value)
event = st.fixed_dictionaries(
    {"timestamp": st.one_of(st.integers(0, 2_000), st.just("1500"), st.just(-1), st.just(True))},
    optional={
        "type": text_or_odd,
        "action": text_or_odd,
        "organization_uuid": text_or_odd,
        "initiator": text_or_odd,
        "user": st.one_of(
            st.fixed_dictionaries({"uuid": text_or_odd, "email": text_or_odd}),
            st.fixed_dictionaries({}, optional={"uuid": st.text(max_size=3), "email": st.text(max_size=3)}),
            json_value,
        ),
        "metadata": st.one_of(
            json_value,
            st.fixed_dictionaries({"msp": st.fixed_dictionaries({}, optional={"user_uuid": text_or_odd})}),
        ),
        "extra": json_value,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=12), st.randoms(use_true_random=False))
def test_any_window_maps_as_the_general_functions_do(
    events: list[dict[str, Any]], rnd: random.Random
) -> None:
    events = events + [dict(e) for e in events if rnd.random() < 0.3]  # some repeats
    rnd.shuffle(events)
    try:
        expected = _reference_rows(events, Ledger())
    except TypeError:  # a string column holding an integer over 64 bits: both must refuse it
        with pytest.raises(TypeError):
            select_new(events, Ledger())
        return
    selection = select_new(events, Ledger())
    assert _exact(selection.rows) == _exact(expected)
    assert selection.keys == [ledger_key(row) for row in selection.rows]


@settings(max_examples=300, deadline=None)
@given(st.one_of(event, st.sampled_from(ODD)), st.integers(0, 3))
def test_fast_row_is_to_row_or_declines(raw: Any, occurrence: int) -> None:
    """`mapping.fast_row` gives exactly `to_row`'s row (keys, order, types), or None."""
    prepared = prepare(raw)
    if not isinstance(prepared, PreparedEvent):
        return
    eid = event_id(prepared.digest, occurrence)
    fast = fast_row(raw, prepared.timestamp, eid)
    if fast is not None:
        assert _exact([fast]) == _exact([to_row(prepared, occurrence)])


def test_fast_row_takes_the_documented_event_and_declines_the_rest() -> None:
    assert fast_row(dict(BASE), BASE["timestamp"], "x-0") is not None
    for odd in (dict(BASE, extra=1), dict(BASE, type=5), dict(BASE, user={"uuid": "u"}), [BASE]):
        assert fast_row(odd, BASE["timestamp"], "x-0") is None, odd
    msp = dict(BASE, metadata={"msp": {"user_uuid": "m"}})
    assert fast_row(msp, BASE["timestamp"], "x-0") is None, "the MSP rule is to_row's"


def test_batch_keys_are_the_ledger_keys_of_their_rows() -> None:
    big = dict(BASE, timestamp=BASE["timestamp"] + 5, metadata={"blob": "x" * 5_000})
    events: list[Any] = [*_ordinary(60), big, dict(BASE), dict(BASE), dict(BASE)]
    ledger = Ledger()
    ledger.add(prepare(BASE).digest, BASE["timestamp"])  # copy 0 was delivered: -1 and -2 are new
    selection = select_new(events, ledger)
    assert any(r["EventId"].endswith("-2") for r in selection.rows)

    items = list(pack(selection.rows, max_body_bytes=2_000, keys=selection.keys))
    where = [i for i, item in enumerate(items) if isinstance(item, Oversize)]
    assert len(where) == 1 and 0 < where[0] < len(items) - 1  # in the middle
    oversize = items[where[0]]
    assert isinstance(oversize, Oversize) and oversize.row["metadata"] == big["metadata"]
    batches = [item for item in items if isinstance(item, Batch)]
    assert len(batches) > 2
    for batch in batches:
        assert batch.keys == [ledger_key(row) for row in batch.rows]
    sent = [key for batch in batches for key in batch.keys]
    assert sent == [ledger_key(row) for row in selection.rows if row is not oversize.row]

    # Without keys: the same batches, and `Batch.keys` empty (the caller falls back to ledger_key).
    plain = list(pack(selection.rows, max_body_bytes=2_000))
    assert [(type(i), getattr(i, "body", None)) for i in plain] == [
        (type(i), getattr(i, "body", None)) for i in items
    ]
    assert all(b.keys == [] for b in plain if isinstance(b, Batch))


def test_keys_must_be_aligned_with_rows() -> None:
    selection = select_new(_ordinary(5), Ledger())
    with pytest.raises(ValueError, match="aligned"):
        list(pack(selection.rows, keys=selection.keys[:-1]))
