"""Pack mapped rows into request bodies that the Logs Ingestion API will accept.

The API refuses a call over 1 MB "compressed and uncompressed" (413), and the SDK's own chunker
counts neither brackets nor commas, so it can exceed 1 MiB. We build each JSON-array body ourselves,
counting every byte, and stay under `max_body_bytes` (1,000,000 by default, a margin below
1,048,576). Each row is serialised exactly once; the body is those bytes joined, which is what the
sink gzips and sends.

A row that cannot fit even alone is not an error of the batch: it is yielded as `Oversize`, in its
place in the sequence, so the pipeline can set it aside (dead letter) and move on. A row that cannot
be serialised at all (it should not exist: rows come from JSON) is yielded as `Unsendable` alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .ports import Batch, SetAsideCode

DEFAULT_MAX_BODY_BYTES = 1_000_000


@dataclass(frozen=True)
class Oversize:
    """A single row whose JSON alone is over the request limit. `index` counts input rows."""

    index: int
    row: dict[str, Any]
    size: int
    limit: int

    code = SetAsideCode.OVERSIZE

    @property
    def reason(self) -> str:
        return oversize_reason(self.size, self.limit)


@dataclass(frozen=True)
class Unsendable:
    """A single row that cannot be serialised as JSON. `index` counts input rows."""

    index: int
    row: dict[str, Any]
    error: str  # the exception's class name only: its text may quote the row

    code = SetAsideCode.UNSENDABLE

    @property
    def reason(self) -> str:
        return f"record cannot be serialised as JSON ({self.error})"


def oversize_reason(size: int, limit: int) -> str:
    return f"record is {size:,} bytes, over the {limit:,}-byte request limit"


def serialise(row: dict[str, Any]) -> bytes:
    """One row's JSON. orjson first; the stdlib for what orjson refuses (integers over 64 bits)."""
    try:
        return orjson.dumps(row)
    except TypeError:
        return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()


def pack(
    rows: Iterable[dict[str, Any]],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    keys: Sequence[tuple[bytes, int]] | None = None,
) -> Iterator[Batch | Oversize | Unsendable]:
    """Yield batches and oversize rows in input order.

    Every `Batch.body` is ``[`` + rows joined by ``,`` + ``]`` and at most `max_body_bytes` long.
    Order is preserved (an oversize row closes the batch before it), so "delivered up to here" keeps
    a meaning for the checkpoint. `keys`, if given, must be aligned with `rows` (as
    `dedup.Selection.keys` is); each batch then carries its rows' keys in `Batch.keys`.
    """
    if max_body_bytes < 3:
        raise ValueError("max_body_bytes must leave room for at least '[{}]'")
    # Local names: this loop runs once per event, so attribute lookups are worth avoiding.
    dumps = orjson.dumps
    budget = max_body_bytes - 2  # the brackets
    parts: list[bytes] = []
    batch_rows: list[dict[str, Any]] = []
    used = -1  # bytes of parts plus commas; -1 so that the first row's "comma" is free
    # A batch is always a run of consecutive input rows, so its keys are one slice of `keys`, taken
    # when the batch is closed: nothing per row.
    start = 0  # index of the current batch's first row
    for index, row in enumerate(rows):
        try:
            data = dumps(row)
        except TypeError:
            try:
                data = serialise(row)
            except (TypeError, ValueError, RecursionError) as exc:
                if parts:
                    yield _batch(batch_rows, parts, keys, start)
                    parts, batch_rows, used = [], [], -1
                yield Unsendable(index, row, type(exc).__name__)
                start = index + 1
                continue
        size = len(data)
        if size > budget:
            if parts:
                yield _batch(batch_rows, parts, keys, start)
                parts, batch_rows, used = [], [], -1
            yield Oversize(index, row, size + 2, max_body_bytes)
            start = index + 1
            continue
        used += size + 1
        if used > budget:
            yield _batch(batch_rows, parts, keys, start)
            parts, batch_rows, used, start = [], [], size, index
        parts.append(data)
        batch_rows.append(row)
    if parts:
        yield _batch(batch_rows, parts, keys, start)


def _batch(
    rows: list[dict[str, Any]],
    parts: list[bytes],
    keys: Sequence[tuple[bytes, int]] | None,
    start: int,
) -> Batch:
    body = b"[" + b",".join(parts) + b"]"
    if keys is None:
        return Batch(rows, body)
    batch_keys = list(keys[start : start + len(rows)])
    if len(batch_keys) != len(rows):
        raise ValueError("pack: keys are not aligned with rows")
    return Batch(rows, body, batch_keys)


def body_of(rows: Iterable[dict[str, Any]]) -> bytes:
    """The JSON-array body of `rows` with no limit (used to re-send part of a batch)."""
    return b"[" + b",".join(serialise(r) for r in rows) + b"]"
