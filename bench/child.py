"""One measurement in a process of its own: `python -m bench.child --strategy ours|official`.

Settings come from the environment (as in the Functions host). The process reports, as one JSON
line on stdout: wall time and process CPU time of the backfill (until caught up), its own peak RSS,
the stand-ins' request counters for the backfill and for one idle tick after it. Counters are read
over the stand-ins' control routes between the timed phases, so reading them is not measured.

It also reports the CPU of the whole process from its start (interpreter start-up and imports
included) to the end of the backfill, as a user who runs one backfill pays it: `startup_cpu_seconds`
is what was spent before `main` began, `process_cpu_seconds` everything up to the end of the backfill.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import ssl
import sys
import time
from typing import Any

import httpx
import orjson

from nordpass_connector.composition import build_connector, quiet_third_party_loggers
from nordpass_connector.pipeline import RunFailed, run_once
from nordpass_connector.settings import load_settings

from .baseline import run_official

# A 7-day backfill of a million events takes about one run of 45 s; this only guards against a
# connector that stops making progress.
MAX_RUNS = 50
IDLE_PAUSE_SECONDS = 2.0  # so the idle tick has a (small, empty) new window to ask about


class Counters:
    def __init__(self, nordpass_control: str, ingestion_endpoint: str, ca_file: str) -> None:
        self._np = httpx.Client(base_url=nordpass_control, timeout=60)
        self._ing = httpx.Client(
            base_url=ingestion_endpoint, verify=ssl.create_default_context(cafile=ca_file), timeout=60
        )

    def snapshot(self) -> dict[str, Any]:
        state = self._np.get("/state").raise_for_status().json()
        calls = self._ing.get("/_sandbox/calls").raise_for_status().json()
        return {
            "nordpass_requests": state["requests"],
            "ingestion_requests": len(calls),
            "ingestion_wire_bytes": sum(c["wire_bytes"] for c in calls),
            "ingestion_raw_bytes": sum(c["raw_bytes"] for c in calls),
            "largest_wire_body": max((c["wire_bytes"] for c in calls), default=0),
            "largest_raw_body": max((c["raw_bytes"] for c in calls), default=0),
            "ingestion_statuses": sorted({c["status"] for c in calls}),
        }

    def close(self) -> None:
        self._np.close()
        self._ing.close()


def _diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {
        "nordpass_requests": after["nordpass_requests"] - before["nordpass_requests"],
        "ingestion_requests": after["ingestion_requests"] - before["ingestion_requests"],
        "ingestion_wire_bytes": after["ingestion_wire_bytes"] - before["ingestion_wire_bytes"],
    }


def _ours(environ: dict[str, str]) -> dict[str, Any]:
    settings = load_settings(environ)
    reports = []
    while True:
        with build_connector(settings, environ) as connector:
            try:
                report = run_once(connector)
            except RunFailed as failure:
                raise SystemExit(f"run failed: {failure.report.to_json()}") from None
        reports.append(report)
        if report.caught_up:
            break
        if len(reports) >= MAX_RUNS:
            raise SystemExit(f"not caught up after {MAX_RUNS} runs")
    return {
        "runs": len(reports),
        "run_seconds": [r.duration_seconds for r in reports],
        "fetched": sum(r.fetched for r in reports),
        "sent": sum(r.sent for r in reports),
        "windows": sum(r.windows for r in reports),
        "retries": [r.retries for r in reports if r.retries],
    }


def _official(environ: dict[str, str], max_events: int | None) -> dict[str, Any]:
    run = run_official(load_settings(environ), environ, max_events=max_events)
    return {"runs": 1, "fetched": run.fetched, "sent": run.uploaded, "capped": run.capped}


def _process_cpu() -> float:
    """CPU seconds (user + system) of this process since it started."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    startup_cpu = _process_cpu()
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    parser.add_argument("--strategy", choices=["ours", "official"], required=True)
    parser.add_argument("--max-events", type=int, default=None, help="official: stop after this many")
    parser.add_argument("--nordpass-control", required=True)
    parser.add_argument("--ingestion-endpoint", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--idle", action="store_true", help="measure one idle tick afterwards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    quiet_third_party_loggers()
    environ = dict(os.environ)
    counters = Counters(args.nordpass_control, args.ingestion_endpoint, args.ca)

    def once() -> dict[str, Any]:
        if args.strategy == "ours":
            return _ours(environ)
        return _official(environ, args.max_events)

    before = counters.snapshot()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    detail = once()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    process_cpu = _process_cpu()
    peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    after = counters.snapshot()
    result: dict[str, Any] = {
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "startup_cpu_seconds": round(startup_cpu, 3),
        "process_cpu_seconds": round(process_cpu, 3),
        "peak_rss_mb": round(peak_rss_kib / 1024, 1),
        **detail,
        **_diff(after, before),
        "largest_wire_body": after["largest_wire_body"],
        "largest_raw_body": after["largest_raw_body"],
        "ingestion_statuses": after["ingestion_statuses"],
    }
    if args.idle:
        time.sleep(IDLE_PAUSE_SECONDS)
        args.max_events = None
        once()
        result["idle_tick"] = _diff(counters.snapshot(), after)
    counters.close()
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
