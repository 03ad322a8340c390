"""Freshness: how long a live event takes to reach Sentinel, ours against the official pattern.

The scenario (`make bench`, issue 14): events arrive continuously at a steady rate, most of them
visible at NordPass within `ON_TIME_LAG` of their timestamp (a write in progress), a share of them
late (`LATE_LAG`: NordPass indexing lag, seconds to 15 minutes). The timer fires every 60 s. Each tick
runs the real timer path (`composition.run_timer_tick`: settings, real clients, Azurite checkpoint,
health record) or, for the baseline, one official-style run (`baseline.run_official`), against the
NordPass simulator over HTTP, the HTTPS ingestion stand-in and the token endpoint.

Time is simulated and shared: the connector's `Clock` and the simulator's `now` both read
`SharedClock` (real time plus an offset kept in a small file, so the driver process and the
stand-ins' process agree). At tick k the driver sets the clock to `t0 + 60 k`; during the run it
flows in real time, so **run durations are measured and added**, then the clock jumps to the next
tick. An event becomes visible (servable) when the clock passes its arrival time.

For every event: delay = simulated time at which the ingestion request that carried it was
acknowledged (the sink's `send` returned it delivered) - its timestamp. Acknowledgements are matched
to the schedule by content digest (a multiset: identical events legitimately repeat), which gives
loss and duplicates for both strategies with one rule.

Processes: the caller (`bench.run`) hosts the stand-ins in threads and starts one `drive` child per
measured configuration (`python -m bench.freshness drive ...`), so each measurement has a fresh
interpreter, its own CPU time and peak RSS, and a fresh checkpoint table.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import mmap
import os
import random
import resource
import ssl
import struct
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from nordpass_connector import schema
from nordpass_connector.clock import SystemClock
from nordpass_connector.mapping import EVENT_ID_DIGEST_BYTES, canonical_digest, digest_prefix

from .events import stamped

TICK_SECONDS = 60
DEFAULT_RATE_PER_MINUTE = 100.0  # ~144,000 events a day
LATE_SHARE = 0.10
ON_TIME_LAG = (0.0, 2.0)  # seconds from timestamp to visible, uniform
LATE_LAG = (5.0, 900.0)  # seconds, log-uniform: up to the 15 minutes the overlap must cover
# After the last event is generated: enough ticks for the latest arrival, then idle ticks.
IDLE_TICKS = 2
DRIVE_TIMEOUT_SECONDS = 1_800
REPO = Path(__file__).resolve().parent.parent

log = logging.getLogger("bench.freshness")


# -- the shared simulated clock ------------------------------------------------------------------


class SharedClock(SystemClock):
    """A wall clock that processes share through a file: `now()` = real time + an offset.

    `set(t)` moves every reader's clock to `t` at once; from there it flows in real time. Monotonic
    time and sleeping stay real, so run budgets and timeouts are real seconds."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists() or self.path.stat().st_size < 8:
            self.path.write_bytes(struct.pack("d", 0.0))
        self._file = self.path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), 8)

    def set(self, t: float) -> None:
        struct.pack_into("d", self._map, 0, t - time.time())

    def now(self) -> float:
        offset: float = struct.unpack_from("d", self._map, 0)[0]
        return time.time() + offset

    def close(self) -> None:
        self._map.close()
        self._file.close()


# -- the schedule --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scheduled:
    timestamp: int
    arrival: float  # simulated time at which NordPass starts serving it
    late: bool
    blob: bytes  # the event's JSON, as served


@dataclass(frozen=True)
class Scenario:
    rate_per_minute: float
    minutes: int  # events are generated over this many minutes from t0
    t0: int
    late_share: float = LATE_SHARE
    seed: int = 7

    @property
    def ticks(self) -> int:
        """Ticks at t0, t0 + 60, ...: the generation minutes, then until the latest possible
        arrival has had a tick, then `IDLE_TICKS` with nothing new."""
        drain = math.ceil((LATE_LAG[1] if self.late_share else ON_TIME_LAG[1]) / TICK_SECONDS) + 1
        return self.minutes + drain + IDLE_TICKS

    def events(self) -> list[Scheduled]:
        count = round(self.rate_per_minute * self.minutes)
        rng = random.Random(f"freshness:{self.seed}")
        low, high = math.log(LATE_LAG[0]), math.log(LATE_LAG[1])
        out = []
        # First tick at t0 (the backfill of an empty history); events from its second on.
        for ts, blob in stamped(count, start=self.t0 + 1, end=self.t0 + 60 * self.minutes, seed=self.seed):
            late = rng.random() < self.late_share
            lag = math.exp(rng.uniform(low, high)) if late else rng.uniform(*ON_TIME_LAG)
            out.append(Scheduled(ts, ts + lag, late, blob))
        return out


def load(sim: Any, schedule: Sequence[Scheduled]) -> None:
    """Queue every event in the simulator, visible from its arrival (simulator clock)."""
    for item in schedule:
        sim.add([orjson.loads(item.blob)], visible_at=item.arrival)


# -- analysis ------------------------------------------------------------------------------------


def _percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def distribution(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    s = sorted(values)
    return {
        "count": len(s),
        "p50": round(_percentile(s, 50), 1),
        "p95": round(_percentile(s, 95), 1),
        "p99": round(_percentile(s, 99), 1),
        "max": round(s[-1], 1),
    }


def analyse(schedule: Sequence[Scheduled], acks: Sequence[tuple[str, float]]) -> dict[str, Any]:
    """Match acknowledgements (EventId, ack time) to scheduled events by content digest.

    Copies of one digest are paired in order (earliest arrival with earliest acknowledgement); a
    scheduled copy with no acknowledgement is lost, an acknowledgement with no copy left is a
    duplicate."""
    # Keyed by the digest part an EventId carries (`mapping.digest_prefix`).
    truth: dict[bytes, list[Scheduled]] = defaultdict(list)
    for item in schedule:
        truth[canonical_digest(orjson.loads(item.blob))[:EVENT_ID_DIGEST_BYTES]].append(item)
    got: dict[bytes, list[float]] = defaultdict(list)
    for eid, at in acks:
        got[digest_prefix(eid)].append(at)
    delays: dict[str, list[float]] = {"on_time": [], "late": []}
    lost = {"on_time": 0, "late": 0}
    duplicates = 0
    for stem in truth.keys() | got.keys():
        copies = sorted(truth.get(stem, []), key=lambda s: s.arrival)
        times = sorted(got.get(stem, []))
        for item, at in zip(copies, times, strict=False):
            delays["late" if item.late else "on_time"].append(at - item.timestamp)
        for item in copies[len(times) :]:
            lost["late" if item.late else "on_time"] += 1
        duplicates += max(0, len(times) - len(copies))
    return {
        "events": len(schedule),
        "late_events": sum(1 for s in schedule if s.late),
        "on_time": distribution(delays["on_time"]),
        "late": distribution(delays["late"]),
        "all": distribution(delays["on_time"] + delays["late"]),
        "lost": lost["on_time"] + lost["late"],
        "lost_on_time": lost["on_time"],
        "lost_late": lost["late"],
        "duplicates": duplicates,
    }


def tick_summary(ticks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-tick costs: run duration, CPU, requests; and the idle ticks (nothing new delivered)."""
    working = ticks[1:]  # the first tick backfills an empty history
    idle = [t for t in working if t["delivered"] == 0]

    def mean(key: str, digits: int) -> float | None:
        return round(sum(t[key] for t in working) / len(working), digits) if working else None

    return {
        "ticks": len(ticks),
        "run_seconds": distribution([t["seconds"] for t in working]),
        "run_seconds_mean": mean("seconds", 3),
        "cpu_seconds_mean": mean("cpu_seconds", 4),
        "nordpass_requests_per_tick": mean("nordpass_requests", 2),
        "ingestion_requests_per_tick": mean("ingestion_requests", 2),
        "idle_ticks": len(idle),
        "idle_tick_max_nordpass_requests": max((t["nordpass_requests"] for t in idle), default=None),
        "idle_tick_max_ingestion_requests": max((t["ingestion_requests"] for t in idle), default=None),
        # The health row of every run (`NordPassConnectorHealth_CL`), apart from the events' uploads.
        "health_requests_per_tick": mean("health_requests", 2),
        "failed_ticks": sum(1 for t in ticks if t["outcome"] not in ("ok", "official")),
    }


# -- the driver (child process) ------------------------------------------------------------------


class _Counters:
    def __init__(self, nordpass_control: str, ingestion_endpoint: str, ca_file: str) -> None:
        self._np = httpx.Client(base_url=nordpass_control, timeout=60)
        self._ing = httpx.Client(
            base_url=ingestion_endpoint, verify=ssl.create_default_context(cafile=ca_file), timeout=60
        )

    def snapshot(self) -> tuple[int, int, int]:
        """NordPass requests, event uploads and health-row uploads so far. The health row (one
        a run, issue 13) is counted apart: the idle-tick target is about event uploads."""
        state = self._np.get("/state").raise_for_status().json()
        stats = self._ing.get("/_sandbox/stats").raise_for_status().json()
        by_stream = stats["calls_by_stream"]
        health = int(by_stream.get(schema.DEFAULT_HEALTH_STREAM_NAME, 0))
        return int(state["requests"]), int(stats["calls"]) - health, health

    def close(self) -> None:
        self._np.close()
        self._ing.close()


class _Records(logging.Handler):
    """What a healthy tick logs through the root logger, as the Functions Python worker forwards it
    (the worker's handler sits on the root logger; host.json then filters by category)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _acknowledgements(clock: SharedClock, acks: list[tuple[str, float]]) -> Iterator[None]:
    """Record, for every row the real sink reports delivered, the simulated time `send` returned."""
    from nordpass_connector.adapters.ingestion import IngestionSink

    original = IngestionSink.send

    def send(self: IngestionSink, batch: Any, *, deadline: Any) -> Any:
        delivery = original(self, batch, deadline=deadline)
        at = clock.now()
        acks.extend((batch.rows[i]["EventId"], at) for i in delivery.delivered)
        return delivery

    IngestionSink.send = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        IngestionSink.send = original  # type: ignore[method-assign]


def drive(args: argparse.Namespace) -> dict[str, Any]:
    from nordpass_connector.composition import quiet_third_party_loggers, run_timer_tick
    from nordpass_connector.errors import ConnectorError
    from nordpass_connector.settings import load_settings

    from .baseline import run_official

    environ = dict(os.environ)
    clock = SharedClock(args.clock)
    counters = _Counters(args.nordpass_control, args.ingestion_endpoint, args.ca)
    acks: list[tuple[str, float]] = []
    capture = _Records()
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(capture)
    quiet_third_party_loggers()
    ticks: list[dict[str, Any]] = []
    sample_lines: list[str] = []
    with _acknowledgements(clock, acks):
        for k in range(args.ticks):
            clock.set(args.t0 + TICK_SECONDS * k)
            np0, ing0, health0 = counters.snapshot()
            acked0, records0 = len(acks), len(capture.records)
            outcome = "official"
            wall0, cpu0 = time.perf_counter(), time.process_time()
            try:
                if args.strategy == "ours":
                    outcome = run_timer_tick(environ=environ, clock=clock).outcome
                else:
                    run_official(load_settings(environ), environ, clock=clock)
            except ConnectorError as error:
                outcome = f"failed: {type(error).__name__}"
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            np1, ing1, health1 = counters.snapshot()
            records = capture.records[records0:]
            if k == 1 and args.strategy == "ours":
                sample_lines = [r.getMessage() for r in records]
            ticks.append(
                {
                    "tick": k,
                    "seconds": round(wall, 4),
                    "cpu_seconds": round(cpu, 4),
                    "outcome": outcome,
                    "nordpass_requests": np1 - np0,
                    "ingestion_requests": ing1 - ing0,
                    "health_requests": health1 - health0,
                    "delivered": len(acks) - acked0,
                    "log_records": [[r.levelname, r.name, len(r.getMessage().encode())] for r in records],
                }
            )
    root.removeHandler(capture)
    counters.close()
    clock.close()
    return {
        "strategy": args.strategy,
        "ticks": ticks,
        "acks": acks,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "sample_log_lines": sample_lines,
    }


# -- the orchestrator side -----------------------------------------------------------------------


@dataclass
class Config:
    """One measured configuration: a strategy and, for ours, settings passed explicitly."""

    name: str
    strategy: str = "ours"
    settings: dict[str, str] = field(default_factory=dict)


class Stand:
    """The stand-ins for the freshness scenarios, in this process's threads, serving by a clock
    that the driver processes move."""

    def __init__(self, certs: Path, folder: Path, *, nordpass_ms: float, ingestion_ms: float) -> None:
        from sandbox.ingestion import IngestionStandIn
        from sandbox.nordpass_sim import NordPassSimulator
        from sandbox.token_endpoint import TokenEndpoint

        self.clock = SharedClock(folder / "clock")
        self.nordpass_ms, self.ingestion_ms = nordpass_ms, ingestion_ms
        self._stack = contextlib.ExitStack()
        self.token = f"fresh-{uuid.uuid4().hex}"
        self.endpoint = self._stack.enter_context(TokenEndpoint())
        self.ingestion = self._stack.enter_context(
            IngestionStandIn(certs, expected_token=self.endpoint.access_token, store="count")
        )
        self.sim = self._stack.enter_context(NordPassSimulator(token=self.token, now=self.clock.now))

    def prepare(self, scenario: Scenario, schedule: Sequence[Scheduled]) -> None:
        self.sim.reset()
        self.sim.configure(latency=self.nordpass_ms / 1000)
        self.ingestion.reset()
        self.ingestion.set_latency(self.ingestion_ms)
        self.clock.set(scenario.t0 - TICK_SECONDS)
        load(self.sim, schedule)

    def environ(self, azurite: Any, config: Config) -> dict[str, str]:
        from sandbox.token_endpoint import CONFLICTING_VARIABLES

        env = {
            k: v for k, v in os.environ.items() if k not in CONFLICTING_VARIABLES and k != "CURL_CA_BUNDLE"
        }
        # Only what a deployment sets; tuning settings keep their code defaults unless the
        # configuration names them.
        env = {k: v for k, v in env.items() if not k.startswith("NORDPASS_")}
        env |= self.endpoint.environment()
        env |= {
            "REQUESTS_CA_BUNDLE": self.ingestion.ca_file,
            "NORDPASS_ENDPOINT_URL": self.sim.url,
            "NORDPASS_TOKEN": self.token,
            "DATA_COLLECTION_ENDPOINT": self.ingestion.endpoint,
            "DCR_IMMUTABLE_ID": self.ingestion.dcr_immutable_id,
            "DCR_STREAM_NAME": self.ingestion.stream_name,
            "AzureWebJobsStorage": azurite.connection_string,
            "CHECKPOINT_TABLE_NAME": f"fresh{uuid.uuid4().hex[:12]}",
        }
        return env | config.settings

    def close(self) -> None:
        self._stack.close()
        self.clock.close()


def measure(stand: Stand, azurite: Any, scenario: Scenario, config: Config) -> dict[str, Any]:
    """Run one configuration over the scenario in a fresh driver process; return its figures."""
    schedule = scenario.events()
    stand.prepare(scenario, schedule)
    cmd = [
        sys.executable,
        "-m",
        "bench.freshness",
        "drive",
        "--strategy",
        config.strategy,
        "--clock",
        str(stand.clock.path),
        "--t0",
        str(scenario.t0),
        "--ticks",
        str(scenario.ticks),
        "--nordpass-control",
        stand.sim.control_url,
        "--ingestion-endpoint",
        stand.ingestion.endpoint,
        "--ca",
        stand.ingestion.ca_file,
    ]
    done = subprocess.run(
        cmd,
        cwd=REPO,
        env=stand.environ(azurite, config),
        capture_output=True,
        text=True,
        timeout=DRIVE_TIMEOUT_SECONDS,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.freshness drive {config.name} failed:\n{done.stderr[-4000:]}")
    raw = orjson.loads(done.stdout.strip().splitlines()[-1])
    stats = stand.ingestion.stats()
    result = {
        "config": config.name,
        "strategy": config.strategy,
        "settings": config.settings,
        "rate_per_minute": scenario.rate_per_minute,
        "minutes": scenario.minutes,
        **analyse(schedule, [(eid, at) for eid, at in raw["acks"]]),
        **tick_summary(raw["ticks"]),
        "peak_rss_mb": raw["peak_rss_mb"],
        "accepted_rows": stats["accepted_rows"],
        "duplicate_event_ids": stats["duplicate_event_ids"],
    }
    result["ticks_detail"] = raw["ticks"]
    result["sample_log_lines"] = raw["sample_log_lines"]
    return result


TARGETS = {
    "on_time_p50_seconds": 35.0,
    "on_time_p95_seconds": 65.0,
    "lost": 0,
    "duplicates": 0,
    "idle_nordpass_requests": 2,
    "idle_ingestion_requests": 0,
}
SWEEP_DELAYS = (0, 1, 2, 5, 10, 30, 60)
SWEEP_LOOKBACKS = (600, 900, 1200)
CALM_DELAYS = (0, 1, 2, 5)
STEADY_MINUTES = 10


def meets_targets(result: dict[str, Any]) -> bool:
    return (
        result["on_time"].get("p50", math.inf) <= TARGETS["on_time_p50_seconds"]
        and result["on_time"].get("p95", math.inf) <= TARGETS["on_time_p95_seconds"]
        and result["lost"] == 0
        and result["duplicates"] == 0
        and (result["idle_tick_max_nordpass_requests"] or 0) <= TARGETS["idle_nordpass_requests"]
        and (result["idle_tick_max_ingestion_requests"] or 0) <= TARGETS["idle_ingestion_requests"]
    )


def run_all(
    azurite: Any,
    certs: Path,
    folder: Path,
    *,
    quick: bool,
    nordpass_ms: float,
    ingestion_ms: float,
    progress: Any = None,
) -> dict[str, Any]:
    """The freshness comparison, the sweep behind the defaults, and the steady state of the three
    organisation sizes (for the cost). Returns everything, per-tick detail included."""
    from nordpass_connector.settings import Settings

    defaults = {f.name: f.default for f in Settings.__dataclass_fields__.values()}
    default_delay, default_lookback = defaults["safety_delay_seconds"], defaults["lookback_seconds"]
    t0 = (int(time.time()) // TICK_SECONDS - 3 * 1440) * TICK_SECONDS  # whole minutes, 3 days ago
    minutes = 10 if quick else 30
    scenario = Scenario(DEFAULT_RATE_PER_MINUTE, minutes, t0=t0)
    stand = Stand(certs, folder, nordpass_ms=nordpass_ms, ingestion_ms=ingestion_ms)
    say = progress or (lambda _text: None)
    try:
        ours = measure(stand, azurite, scenario, Config("ours (defaults)"))
        say(f"freshness ours: on-time {ours['on_time']}, late {ours['late']}, lost {ours['lost']}")
        official = measure(stand, azurite, scenario, Config("official", "official"))
        say(f"freshness official: on-time {official['on_time']}, lost {official['lost']}")
        sweep = []
        delays = (0, 2, 60) if quick else SWEEP_DELAYS
        lookbacks = (600, 900) if quick else SWEEP_LOOKBACKS
        points = [(d, default_lookback) for d in delays] + [
            (default_delay, lb) for lb in lookbacks if lb != default_lookback
        ]
        for delay, lookback in points:
            if (delay, lookback) == (default_delay, default_lookback):
                result = ours
            else:
                settings = {
                    "NORDPASS_SAFETY_DELAY_SECONDS": str(delay),
                    "NORDPASS_LOOKBACK_SECONDS": str(lookback),
                }
                result = measure(
                    stand,
                    azurite,
                    scenario,
                    Config(f"delay {delay} s, lookback {lookback} s", settings=settings),
                )
            row = {
                "safety_delay_seconds": delay,
                "lookback_seconds": lookback,
                "default": (delay, lookback) == (default_delay, default_lookback),
                "on_time": result["on_time"],
                "late": result["late"],
                "lost": result["lost"],
                "duplicates": result["duplicates"],
                "nordpass_requests_per_tick": result["nordpass_requests_per_tick"],
                "ingestion_requests_per_tick": result["ingestion_requests_per_tick"],
                "idle_tick_max_nordpass_requests": result["idle_tick_max_nordpass_requests"],
                "idle_tick_max_ingestion_requests": result["idle_tick_max_ingestion_requests"],
                "run_seconds_mean": result["run_seconds_mean"],
                "meets_targets": meets_targets(result),
            }
            say(f"sweep {row}")
            sweep.append(row)
        # Without late events the probe of the overlap can settle it in one request, unless the
        # previous tick read seconds whose events were still being written (a delay below their lag).
        calm = Scenario(DEFAULT_RATE_PER_MINUTE, minutes, t0=t0, late_share=0.0)
        calm_sweep = []
        for delay in (0, 2) if quick else CALM_DELAYS:
            settings = {"NORDPASS_SAFETY_DELAY_SECONDS": str(delay)}
            result = measure(
                stand, azurite, calm, Config(f"no late events, delay {delay} s", settings=settings)
            )
            calm_sweep.append(
                {
                    "safety_delay_seconds": delay,
                    "on_time": result["on_time"],
                    "lost": result["lost"],
                    "duplicates": result["duplicates"],
                    "nordpass_requests_per_tick": result["nordpass_requests_per_tick"],
                    "run_seconds_mean": result["run_seconds_mean"],
                }
            )
            say(f"calm sweep {calm_sweep[-1]}")
        steady: dict[int, dict[str, Any]] = {}
        for per_day in (1_000, 100_000, 1_000_000):
            rate = per_day / 1440
            steady_scenario = Scenario(rate, 5 if quick else STEADY_MINUTES, t0=t0, seed=11)
            steady[per_day] = measure(stand, azurite, steady_scenario, Config(f"steady {per_day}/day"))
            say(f"steady {per_day}/day: run {steady[per_day]['run_seconds']}, lost {steady[per_day]['lost']}")
    finally:
        stand.close()
    return {
        "scenario": {
            "rate_per_minute": scenario.rate_per_minute,
            "generation_minutes": scenario.minutes,
            "ticks": scenario.ticks,
            "tick_seconds": TICK_SECONDS,
            "late_share": scenario.late_share,
            "on_time_visible_after_seconds": list(ON_TIME_LAG),
            "late_visible_after_seconds": list(LATE_LAG),
            "late_lag_distribution": "log-uniform",
            "latency_ms": {"nordpass": nordpass_ms, "ingestion": ingestion_ms},
            "time": "simulated; run durations measured and added (the clock flows in real time during a run)",
            "delay": "simulated time the ingestion request carrying the event was acknowledged - event timestamp",
        },
        "ours": ours,
        "official": official,
        "sweep": sweep,
        "sweep_without_late_events": calm_sweep,
        "steady": steady,
        "targets": TARGETS,
        "defaults": {"safety_delay_seconds": default_delay, "lookback_seconds": default_lookback},
    }


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The freshness part of `make bench`'s JSON summary."""
    ours, official = results["ours"], results["official"]
    keep = (
        "events",
        "late_events",
        "on_time",
        "late",
        "all",
        "lost",
        "lost_on_time",
        "lost_late",
        "duplicates",
        "nordpass_requests_per_tick",
        "ingestion_requests_per_tick",
        "idle_ticks",
        "idle_tick_max_nordpass_requests",
        "idle_tick_max_ingestion_requests",
        "run_seconds",
        "failed_ticks",
    )
    return {
        "scenario": results["scenario"],
        "defaults": results["defaults"],
        "ours": {k: ours[k] for k in keep},
        "official": {k: official[k] for k in keep},
        "ours_meets_targets": meets_targets(results["ours"]),
        "sweep": results["sweep"],
        "sweep_without_late_events": results["sweep_without_late_events"],
        "targets": results["targets"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.freshness")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("drive", help="run the ticks of one configuration (a child of bench.run)")
    d.add_argument("--strategy", choices=["ours", "official"], required=True)
    d.add_argument("--clock", required=True)
    d.add_argument("--t0", type=int, required=True)
    d.add_argument("--ticks", type=int, required=True)
    d.add_argument("--nordpass-control", required=True)
    d.add_argument("--ingestion-endpoint", required=True)
    d.add_argument("--ca", required=True)
    args = parser.parse_args(argv)
    result = drive(args)
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
