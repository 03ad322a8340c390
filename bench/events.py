"""A fast generator of realistic NordPass events for large backlogs.

`sandbox.datagen` builds each event in Python (about 20 µs each, 20 s for a million), so the
benchmark draws a few thousand events from it once and stamps them with new timestamps as JSON
bytes: same shapes, sizes and key orders as datagen, a million events in about a second, and no
million dicts held in the server process.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import orjson

from sandbox import datagen

TEMPLATES = 4096
# datagen repeats a small share of events verbatim in the same second (two failed logins, ...);
# keeping that share exercises the multiset dedup on the hot path.
REPEAT_RATE = 0.004
_MARK = 987_654_321_012  # stands in for the timestamp while splitting a template


def _templates(seed: int) -> list[tuple[bytes, bytes]]:
    org = datagen.make_org(seed, members=400)
    factory = datagen.EventFactory(org, seed=seed)
    day = 86_400
    pool = factory.background(0, day, per_minute=TEMPLATES / (day / 60))[:TEMPLATES]
    parts = []
    for event in pool:
        event["timestamp"] = _MARK
        head, tail = orjson.dumps(event).split(b"%d" % _MARK)
        parts.append((head, tail))
    return parts


def stamped(count: int, *, start: int, end: int, seed: int = 7) -> Iterator[tuple[int, bytes]]:
    """`count` (timestamp, event JSON) pairs with timestamps in [start, end), in time order."""
    rng = random.Random(f"bench:{seed}")
    parts = _templates(seed)
    span = end - start
    draw = rng.random  # randrange costs ~3 µs a call; random() is ~20x cheaper
    times = sorted(start + int(draw() * span) for _ in range(count))
    picks = rng.choices(range(len(parts)), k=count)
    previous, previous_at = b"", -1
    for at, pick in zip(times, picks, strict=True):
        if previous and draw() < REPEAT_RATE:
            yield previous_at, previous  # a verbatim repeat in the same second
            continue
        head, tail = parts[pick]
        previous, previous_at = head + b"%d" % at + tail, at
        yield at, previous
