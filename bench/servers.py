"""The stand-ins in a process of their own: `python -m bench.servers --events N --certs DIR`.

Runs the NordPass simulator (pre-filled with N events over the last 7 days), the ingestion stand-in
(store="count": rows are parsed and counted, not kept) and the managed-identity token endpoint, then
prints one JSON line with their addresses and serves until stdin closes or SIGTERM. Keeping them out
of the connector's process is what makes the connector's CPU time and RSS measurable on their own.
Latency and logs are steered over the stand-ins' control routes.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
import time
from typing import Any

import orjson

from sandbox.ingestion import IngestionStandIn
from sandbox.nordpass_sim import NordPassSimulator
from sandbox.token_endpoint import TokenEndpoint

from .events import stamped

DAY = 86_400
# Events end this far before "now", beyond the connector's 60 s safety delay, so a backfill that
# starts at once sees all of them.
NEWEST_AGE_SECONDS = 180


def _fill(sim: NordPassSimulator, count: int, *, now: int) -> None:
    # 30 min inside the 7 days: a later measurement on the same servers starts its backfill later.
    start = now - 7 * DAY + 1_800
    batch = list(stamped(count, start=start, end=now - NEWEST_AGE_SECONDS))
    gc.disable()  # a million acyclic bytes objects: the cyclic collector would only cost time
    try:
        # `add` takes dicts; building a million of them only to serialise them again would take
        # longer than the benchmark itself, so the pre-serialised events go straight into the store.
        with sim._lock:
            sim._insert(batch)
    finally:
        gc.enable()
        gc.collect()
        gc.freeze()  # the store never changes again: keep it out of every later collection


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--certs", required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    token = os.environ.get("NORDPASS_SIM_TOKEN", "bench-token")
    now = int(time.time())
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(TokenEndpoint())
        ingestion = stack.enter_context(
            IngestionStandIn(args.certs, expected_token=endpoint.access_token, store="count")
        )
        sim = NordPassSimulator(token=token, seed=args.seed)
        _fill(sim, args.events, now=now)
        stack.enter_context(sim)
        info = {
            "nordpass_url": sim.url,
            "nordpass_control": sim.control_url,
            "nordpass_token": token,
            "ingestion_endpoint": ingestion.endpoint,
            "ingestion_ca": ingestion.ca_file,
            "dcr_immutable_id": ingestion.dcr_immutable_id,
            "stream_name": ingestion.stream_name,
            "identity": endpoint.environment(),
            "events": sim.visible_count(),
            "load_seconds": round(time.perf_counter() - started, 2),
        }
        print(orjson.dumps(info).decode(), flush=True)
        signal.signal(signal.SIGTERM, _stop)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()  # the orchestrator closes our stdin (or exits) when it is done
    return 0


if __name__ == "__main__":
    sys.exit(main())
