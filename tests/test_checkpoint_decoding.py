"""Damaged stored state is named, never a traceback: property tests of the row decoders.

The checkpoint (with its ledger and held windows) and the health record are decoded from table
properties. Any property that is truncated, bit-flipped or of the wrong type must give
CheckpointDamaged naming that property (or, for a change that leaves a plausible value, a clean
decode), and never another exception.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nordpass_connector.adapters.table_store import LEDGER_CHUNK_BYTES, decode_checkpoint, encode_checkpoint
from nordpass_connector.checkpoint import Checkpoint, HeldWindow
from nordpass_connector.errors import CheckpointDamaged
from nordpass_connector.health import HealthRecord, merge_report
from nordpass_connector.ports import Window
from nordpass_connector.report import RunReport

T0 = 1_700_000_000

entries = st.lists(
    st.tuples(st.binary(min_size=8, max_size=8), st.integers(T0 - 5_000, T0 + 5_000)), max_size=60
)
held = st.lists(
    st.builds(
        lambda start, span, since, attempts, reason: HeldWindow(
            Window(start, start + span), since, reason, attempts
        ),
        st.integers(T0 - 90_000, T0),
        st.integers(0, 5_000),
        st.integers(T0, T0 + 90_000),
        st.integers(1, 50),
        st.text(max_size=30),
    ),
    max_size=4,
)


def decoded(fields: dict[str, Any]) -> Checkpoint | CheckpointDamaged:
    """The decoded checkpoint, or the CheckpointDamaged it raised (any other exception escapes)."""
    try:
        return decode_checkpoint(fields)
    except CheckpointDamaged as damage:
        return damage


def checkpoint(ledger: list[tuple[bytes, int]], held_windows: list[HeldWindow]) -> Checkpoint:
    cp = Checkpoint(
        floor=T0,
        current=Window(T0 - 1, T0 + 60),
        done_to=T0 - 30,
        newest_delivered=T0 + 10,
        lease_owner="run-a",
        lease_until=T0 + 40,
        held=held_windows,
    )
    for digest, ts in ledger:
        cp.ledger.add(digest, ts)
    return cp


@settings(max_examples=150, deadline=None)
@given(entries, held)
def test_a_checkpoint_round_trips(ledger: list[tuple[bytes, int]], held_windows: list[HeldWindow]) -> None:
    cp = checkpoint(ledger, held_windows)
    back = decode_checkpoint(encode_checkpoint(cp))
    assert back.ledger.entries == cp.ledger.entries
    assert (back.floor, back.current, back.done_to, back.newest_delivered) == (
        cp.floor,
        cp.current,
        cp.done_to,
        cp.newest_delivered,
    )
    assert (back.lease_owner, back.lease_until, back.held) == (cp.lease_owner, cp.lease_until, cp.held)


@settings(max_examples=200, deadline=None)
@given(entries.filter(bool), st.data())
def test_a_truncated_ledger_is_named(ledger: list[tuple[bytes, int]], data: st.DataObject) -> None:
    fields = encode_checkpoint(checkpoint(ledger, []))
    cut = data.draw(st.integers(0, len(fields["Ledger0"]) - 1))
    fields["Ledger0"] = fields["Ledger0"][:cut]
    with pytest.raises(CheckpointDamaged) as caught:
        decode_checkpoint(fields)
    assert caught.value.property in ("Ledger0", "LedgerEvents")


@settings(max_examples=300, deadline=None)
@given(entries.filter(bool), held, st.data())
def test_a_bit_flip_in_any_stored_bytes_or_text_is_named(
    ledger: list[tuple[bytes, int]], held_windows: list[HeldWindow], data: st.DataObject
) -> None:
    fields = encode_checkpoint(checkpoint(ledger, held_windows))
    name = data.draw(st.sampled_from(["Ledger0", "LedgerCrcs", "Held"]))
    raw = fields[name] if isinstance(fields[name], bytes) else fields[name].encode()
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    if isinstance(fields[name], bytes):
        fields[name] = bytes(flipped)
    else:
        try:
            fields[name] = flipped.decode()
        except UnicodeDecodeError:
            return  # a table property holds text, not bytes that are not UTF-8
    back = decoded(fields)
    if isinstance(back, CheckpointDamaged):
        assert back.property in (name, "Ledger0", "LedgerCrcs"), back
        return
    # Only a flip that still spells a valid value may decode, e.g. a letter's case in a hex
    # checksum or a reason's text; the ledger itself is never silently different.
    assert name != "Ledger0" and back.ledger.entries == checkpoint(ledger, []).ledger.entries


WRONG_TYPES = st.one_of(
    st.text(max_size=5),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(max_size=5),
    st.lists(st.integers()),
)


@settings(max_examples=300, deadline=None)
@given(entries, st.data())
def test_a_property_of_the_wrong_type_is_named(ledger: list[tuple[bytes, int]], data: st.DataObject) -> None:
    fields = encode_checkpoint(checkpoint(ledger, []))
    name = data.draw(st.sampled_from(sorted(fields)))
    wrong = data.draw(WRONG_TYPES.filter(lambda v: type(v) is not type(fields[name])))
    fields[name] = wrong
    back = decoded(fields)
    if isinstance(back, CheckpointDamaged):
        assert back.property in (name, "LedgerChunks", "LedgerCrcs", "Ledger0"), (name, back)
        return
    # Text where text is expected can be a valid value (an empty held list, no checksum list).
    assert isinstance(wrong, str) and name in ("Held", "LedgerCrcs", "LeaseOwner")


@settings(max_examples=200, deadline=None)
@given(entries, st.data())
def test_a_bit_flip_in_a_stored_integer_decodes_or_is_named(
    ledger: list[tuple[bytes, int]], data: st.DataObject
) -> None:
    fields = encode_checkpoint(checkpoint(ledger, []))
    name = data.draw(st.sampled_from([k for k, v in sorted(fields.items()) if type(v) is int]))
    fields[name] ^= 1 << data.draw(st.integers(0, 63))
    back = decoded(fields)
    if isinstance(back, CheckpointDamaged):
        assert back.property in (name, "CurrentEnd", "LedgerCrcs", "LedgerChunks"), (name, back)


def test_a_missing_chunk_and_a_short_middle_chunk_are_named() -> None:
    cp = Checkpoint(floor=T0)
    for i in range(LEDGER_CHUNK_BYTES // 16 + 10):  # two chunks
        cp.ledger.add(i.to_bytes(8, "big"), T0)
    fields = encode_checkpoint(cp)
    assert fields["LedgerChunks"] == 2
    short = dict(fields, Ledger0=fields["Ledger0"][:-16])
    with pytest.raises(CheckpointDamaged, match="Ledger0"):
        decode_checkpoint(short)
    del fields["Ledger1"]
    with pytest.raises(CheckpointDamaged, match="Ledger1 is missing") as caught:
        decode_checkpoint(fields)
    assert caught.value.property == "LedgerChunks"


def test_rows_written_before_checksums_and_held_windows_still_decode() -> None:
    cp = checkpoint([(b"\x01" * 8, T0)], [])
    fields = encode_checkpoint(cp)
    del fields["LedgerCrcs"], fields["Held"]
    assert decode_checkpoint(fields).ledger.entries == cp.ledger.entries


# -- the health row -------------------------------------------------------------------------------


def health_fields() -> dict[str, Any]:
    report = RunReport(run_id="r1", started_at="2023-11-14T22:13:00Z", outcome="ok", sent=3)
    report.held_windows = [{"from": "a", "to": "b", "since": "c", "reason": "d"}]
    return merge_report(None, report, now=T0).to_fields()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_damaged_health_property_is_named(data: st.DataObject) -> None:
    fields = health_fields()
    good = HealthRecord.decode(fields)
    assert good == HealthRecord.from_fields(fields) and good is not None
    name = data.draw(st.sampled_from(sorted(fields)))
    value = fields[name]
    if isinstance(value, str):
        damaged: Any = data.draw(st.one_of(st.just(value[: len(value) // 2]), WRONG_TYPES))
    elif isinstance(value, bool):
        damaged = data.draw(WRONG_TYPES)
    elif isinstance(value, int):
        damaged = data.draw(st.one_of(st.integers().map(lambda k: value ^ (1 << (k % 64))), WRONG_TYPES))
    else:
        damaged = data.draw(WRONG_TYPES)
    fields[name] = damaged
    try:
        record: HealthRecord | CheckpointDamaged | None = HealthRecord.decode(fields)
    except CheckpointDamaged as damage:
        record = damage
    if isinstance(record, CheckpointDamaged):
        assert record.property == name
    else:
        assert record is not None  # a plausible value (a shorter text, another count) decodes
