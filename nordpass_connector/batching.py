"""Pack mapped rows into request bodies that the Logs Ingestion API will accept.

The API refuses a call over 1 MB "compressed and uncompressed" (413), and the SDK's own chunker
counts neither brackets nor commas, so it can exceed 1 MiB. We build each JSON-array body ourselves,
counting every byte, and stay under `max_body_bytes` (1,000,000 by default, a margin below
1,048,576). Each row is serialised exactly once; the body is those bytes joined, which is what the
sink gzips and sends.

A row that cannot fit even alone is not an error of the batch: it is yielded as `Oversize`, in its
place in the sequence, so the pipeline can set it aside (dead letter) and move on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .ports import Batch

DEFAULT_MAX_BODY_BYTES = 1_000_000


@dataclass(frozen=True)
class Oversize:
    """A single row whose JSON alone is over the request limit. `index` counts input rows."""

    index: int
    row: dict[str, Any]
    size: int
    limit: int

    @property
    def reason(self) -> str:
        return oversize_reason(self.size, self.limit)


def oversize_reason(size: int, limit: int) -> str:
    return f"record is {size:,} bytes, over the {limit:,}-byte request limit"


def serialise(row: dict[str, Any]) -> bytes:
    """One row's JSON. orjson first; the stdlib for what orjson refuses (integers over 64 bits)."""
    try:
        return orjson.dumps(row)
    except TypeError:
        return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()


def pack(
    rows: Iterable[dict[str, Any]], *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Iterator[Batch | Oversize]:
    """Yield batches and oversize rows in input order.

    Every `Batch.body` is ``[`` + rows joined by ``,`` + ``]`` and at most `max_body_bytes` long.
    Order is preserved (an oversize row closes the batch before it), so "delivered up to here" keeps
    a meaning for the checkpoint.
    """
    if max_body_bytes < 3:
        raise ValueError("max_body_bytes must leave room for at least '[{}]'")
    # Local names: this loop runs once per event, so attribute lookups are worth avoiding.
    dumps = orjson.dumps
    budget = max_body_bytes - 2  # the brackets
    parts: list[bytes] = []
    batch_rows: list[dict[str, Any]] = []
    used = -1  # bytes of parts plus commas; -1 so that the first row's "comma" is free
    for index, row in enumerate(rows):
        try:
            data = dumps(row)
        except TypeError:
            data = serialise(row)
        size = len(data)
        if size > budget:
            if parts:
                yield Batch(batch_rows, b"[" + b",".join(parts) + b"]")
                parts, batch_rows, used = [], [], -1
            yield Oversize(index, row, size + 2, max_body_bytes)
            continue
        used += size + 1
        if used > budget:
            yield Batch(batch_rows, b"[" + b",".join(parts) + b"]")
            parts, batch_rows, used = [], [], size
        parts.append(data)
        batch_rows.append(row)
    if parts:
        yield Batch(batch_rows, b"[" + b",".join(parts) + b"]")


def body_of(rows: Iterable[dict[str, Any]]) -> bytes:
    """The JSON-array body of `rows` with no limit (used to re-send part of a batch)."""
    return b"[" + b",".join(serialise(r) for r in rows) + b"]"
