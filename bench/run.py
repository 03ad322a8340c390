"""`python -m bench.run` (`make bench`): our pipeline against the official pattern, side by side.

For every backlog size: one `bench.servers` process is filled with that many events over 7 days;
then, each in a fresh `bench.child` process with a fresh checkpoint table in Azurite, the two
strategies run with the configured latencies and once more with zero latency (processing cost
alone). The official pattern at a large backlog is measured on a prefix (`--official-max-events`)
and extrapolated linearly; the JSON says so. Every figure is printed as one JSON object per size
and strategy, then a summary with the ratios and the targets.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from sandbox.azurite import Azurite
from sandbox.certs import ensure_certs
from sandbox.token_endpoint import CONFLICTING_VARIABLES

from . import cost, freshness

REPO = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT_SECONDS = 900
TARGETS = {
    "backfill_1m_seconds": 60.0,
    "speedup": 20.0,
    "cpu_us_per_event_latency0": 20.0,
    # The whole benchmark process, interpreter start-up and imports included, for a 100k backfill.
    "process_cpu_us_per_event_100k": 25.0,
    "peak_rss_mb": 150.0,
    "rss_spread": 0.20,
    "idle_nordpass_requests": 2,
    "idle_ingestion_requests": 0,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--events", default="10000,100000,1000000", help="backlog sizes, comma-separated")
    p.add_argument("--nordpass-latency-ms", type=float, default=50.0)
    p.add_argument("--ingestion-latency-ms", type=float, default=30.0)
    p.add_argument("--strategy", default="ours,official", help="ours, official or both")
    p.add_argument(
        "--official-max-events", type=int, default=100_000, help="prefix measured, rest extrapolated"
    )
    p.add_argument("--quick", action="store_true", help="10k and 100k only")
    p.add_argument("--no-zero-latency", action="store_true", help="skip the latency-0 (CPU cost) runs")
    p.add_argument("--output", default=None, help="also write the JSON report to this file")
    p.add_argument("--no-freshness", action="store_true", help="skip the freshness and cost scenarios")
    p.add_argument("--freshness-only", action="store_true", help="only the freshness and cost scenarios")
    return p.parse_args(argv)


class Servers:
    """The stand-ins' process for one backlog size."""

    def __init__(self, events: int, certs: Path, token: str) -> None:
        env = os.environ | {"NORDPASS_SIM_TOKEN": token}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.servers", "--events", str(events), "--certs", str(certs)],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError("bench.servers did not start")
        self.info: dict[str, Any] = orjson.loads(line)
        self._np = httpx.Client(base_url=self.info["nordpass_control"], timeout=60)
        import ssl

        self._ing = httpx.Client(
            base_url=self.info["ingestion_endpoint"],
            verify=ssl.create_default_context(cafile=self.info["ingestion_ca"]),
            timeout=60,
        )

    def prepare(self, *, nordpass_ms: float, ingestion_ms: float) -> None:
        self._np.request("DELETE", "/requests").raise_for_status()
        self._np.post("/configure", json={"latency": nordpass_ms / 1000}).raise_for_status()
        self._ing.post("/_sandbox/reset", json={"rows": True}).raise_for_status()
        self._ing.post("/_sandbox/mode", json={"latency_ms": ingestion_ms}).raise_for_status()

    def delivered(self) -> dict[str, Any]:
        stats = self._ing.get("/_sandbox/stats").raise_for_status().json()
        return {"accepted_rows": stats["accepted_rows"], "duplicate_rows": stats["duplicate_rows"]}

    def close(self) -> None:
        for client in ("_np", "_ing"):
            if hasattr(self, client):
                getattr(self, client).close()
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the servers' signal to stop
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _environ(servers: Servers, azurite: Azurite) -> dict[str, str]:
    info = servers.info
    env = {k: v for k, v in os.environ.items() if k not in CONFLICTING_VARIABLES and k != "CURL_CA_BUNDLE"}
    env |= info["identity"]
    env |= {
        "REQUESTS_CA_BUNDLE": info["ingestion_ca"],
        "NORDPASS_ENDPOINT_URL": info["nordpass_url"],
        "NORDPASS_TOKEN": info["nordpass_token"],
        "DATA_COLLECTION_ENDPOINT": info["ingestion_endpoint"],
        "DCR_IMMUTABLE_ID": info["dcr_immutable_id"],
        "DCR_STREAM_NAME": info["stream_name"],
        "AzureWebJobsStorage": azurite.connection_string,
        "CHECKPOINT_TABLE_NAME": f"bench{uuid.uuid4().hex[:12]}",
    }
    return env


def _measure(
    servers: Servers,
    azurite: Azurite,
    *,
    strategy: str,
    events: int,
    nordpass_ms: float,
    ingestion_ms: float,
    official_cap: int,
    idle: bool,
) -> dict[str, Any]:
    servers.prepare(nordpass_ms=nordpass_ms, ingestion_ms=ingestion_ms)
    # BENCH_PROFILE=<file> wraps the child in py-spy, to see where its time goes.
    profile = os.environ.get("BENCH_PROFILE")
    prefix = (
        ["py-spy", "record", "--gil", "--format", "raw", "--rate", "200", "-o", profile, "--"]
        if profile
        else []
    )
    cmd = [
        *prefix,
        sys.executable,
        "-m",
        "bench.child",
        "--strategy",
        strategy,
        "--nordpass-control",
        servers.info["nordpass_control"],
        "--ingestion-endpoint",
        servers.info["ingestion_endpoint"],
        "--ca",
        servers.info["ingestion_ca"],
    ]
    capped = strategy == "official" and events > official_cap
    if capped:
        cmd += ["--max-events", str(official_cap)]
    if idle:
        cmd.append("--idle")
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        cmd,
        cwd=REPO,
        env=_environ(servers, azurite),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
    )
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"bench.child {strategy} failed:\n{done.stderr[-4000:]}")
    # CPU of the child from exec to exit (the idle tick included when there is one), as the kernel
    # accounted it: the only waited-for child between the two readings.
    exit_cpu = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    child = orjson.loads(done.stdout.strip().splitlines()[-1])
    measured = child["fetched"] or 1
    result: dict[str, Any] = {
        "strategy": strategy,
        "backlog_events": events,
        "nordpass_latency_ms": nordpass_ms,
        "ingestion_latency_ms": ingestion_ms,
        "wall_seconds": child["wall_seconds"],
        "events_per_second": round(child["fetched"] / child["wall_seconds"])
        if child["wall_seconds"]
        else None,
        "cpu_us_per_event": round(child["cpu_seconds"] * 1e6 / measured, 2),
        "cpu_seconds": child["cpu_seconds"],
        "process_cpu_us_per_event": round(child["process_cpu_seconds"] * 1e6 / measured, 2),
        "process_cpu_seconds": child["process_cpu_seconds"],
        "startup_cpu_seconds": child["startup_cpu_seconds"],
        "exit_cpu_seconds": round(exit_cpu, 3),
        "peak_rss_mb": child["peak_rss_mb"],
        "nordpass_requests": child["nordpass_requests"],
        "ingestion_requests": child["ingestion_requests"],
        "ingestion_bytes": child["ingestion_wire_bytes"],
        "largest_request_body_bytes": child["largest_wire_body"],
        "largest_raw_body_bytes": child["largest_raw_body"],
        "fetched": child["fetched"],
        "sent": child["sent"],
        "runs": child["runs"],
    }
    result |= servers.delivered()
    for key in ("run_seconds", "windows", "retries"):
        if key in child:
            result[key] = child[key]
    if "idle_tick" in child:
        result["idle_tick"] = child["idle_tick"]
    if capped:
        scale = events / measured
        result["extrapolated"] = True
        result["measured_events"] = child["fetched"]
        result["measured_wall_seconds"] = child["wall_seconds"]
        for key in (
            "wall_seconds",
            "nordpass_requests",
            "ingestion_requests",
            "ingestion_bytes",
            "cpu_seconds",
        ):
            result[key] = round(result[key] * scale, 3)
        result["fetched"] = events
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.events.split(",") if s]
    if args.freshness_only:
        sizes = []
    strategies = [s.strip() for s in args.strategy.split(",") if s.strip()]
    profiles = [(args.nordpass_latency_ms, args.ingestion_latency_ms)]
    if not args.no_zero_latency and profiles[0] != (0.0, 0.0):
        profiles.append((0.0, 0.0))
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nordpass-bench-") as tmp, Azurite() as azurite:
        certs = ensure_certs(Path(tmp) / "certs").folder
        for size in sizes:
            servers = Servers(size, certs, token=f"bench-{uuid.uuid4().hex}")
            print(
                f"# {size:,} events loaded in {servers.info['load_seconds']} s", file=sys.stderr, flush=True
            )
            try:
                for nordpass_ms, ingestion_ms in profiles:
                    for strategy in strategies:
                        result = _measure(
                            servers,
                            azurite,
                            strategy=strategy,
                            events=size,
                            nordpass_ms=nordpass_ms,
                            ingestion_ms=ingestion_ms,
                            official_cap=args.official_max_events,
                            idle=(nordpass_ms, ingestion_ms) == profiles[0],
                        )
                        results.append(result)
                        print(orjson.dumps(result).decode(), flush=True)
            finally:
                servers.close()
        live = None
        if not args.no_freshness:
            live = freshness.run_all(
                azurite,
                certs,
                Path(tmp),
                quick=args.quick,
                nordpass_ms=args.nordpass_latency_ms,
                ingestion_ms=args.ingestion_latency_ms,
                progress=lambda text: print(f"# {text}", file=sys.stderr, flush=True),
            )
    report: dict[str, Any] = {"results": results, "summary": _summary(results, profiles[0], sizes)}
    if live is not None:
        backfill_1m = _pick(results, "ours", 1_000_000, profiles[0])
        report["summary"]["freshness"] = freshness.summary(live)
        report["summary"]["cost"] = cost.summarise(
            live["steady"], peak_rss_1m_mb=backfill_1m["peak_rss_mb"] if backfill_1m else None
        )
        report["freshness_detail"] = live | {"steady": {str(k): v for k, v in live["steady"].items()}}
    report["summary"]["bench_seconds"] = round(time.perf_counter() - started, 1)
    text = orjson.dumps(report["summary"], option=orjson.OPT_INDENT_2).decode()
    print(text, flush=True)
    if args.output:
        Path(args.output).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 0


def _pick(
    results: list[dict[str, Any]], strategy: str, size: int, latency: tuple[float, float]
) -> dict[str, Any] | None:
    for r in results:
        if (
            r["strategy"] == strategy
            and r["backlog_events"] == size
            and (r["nordpass_latency_ms"], r["ingestion_latency_ms"]) == latency
        ):
            return r
    return None


def _summary(results: list[dict[str, Any]], latency: tuple[float, float], sizes: list[int]) -> dict[str, Any]:
    per_size: dict[str, Any] = {}
    for size in sizes:
        ours = _pick(results, "ours", size, latency)
        official = _pick(results, "official", size, latency)
        ours0 = _pick(results, "ours", size, (0.0, 0.0))
        official0 = _pick(results, "official", size, (0.0, 0.0))
        entry: dict[str, Any] = {}
        if ours:
            entry["ours_seconds"] = ours["wall_seconds"]
            entry["ours_events_per_second"] = ours["events_per_second"]
            entry["ours_peak_rss_mb"] = ours["peak_rss_mb"]
            entry["ours_idle_tick"] = ours.get("idle_tick")
            entry["ours_delivered_exactly_once"] = (
                ours["accepted_rows"] == ours["sent"] and not ours["duplicate_rows"]
            )
        if official:
            entry["official_seconds"] = official["wall_seconds"]
            entry["official_extrapolated"] = bool(official.get("extrapolated"))
            entry["official_idle_tick"] = official.get("idle_tick")
        if ours and official:
            entry["speedup"] = round(official["wall_seconds"] / ours["wall_seconds"], 1)
        if ours:
            entry["ours_process_cpu_us_per_event"] = ours["process_cpu_us_per_event"]
        if ours0:
            entry["ours_cpu_us_per_event_latency0"] = ours0["cpu_us_per_event"]
            entry["ours_process_cpu_us_per_event_latency0"] = ours0["process_cpu_us_per_event"]
        if official0:
            entry["official_cpu_us_per_event_latency0"] = official0["cpu_us_per_event"]
        per_size[str(size)] = entry
    summary: dict[str, Any] = {
        "latency_ms": {"nordpass": latency[0], "ingestion": latency[1]},
        "sizes": per_size,
    }
    rss = [e["ours_peak_rss_mb"] for e in per_size.values() if "ours_peak_rss_mb" in e]
    if rss:
        summary["ours_peak_rss_spread"] = round(max(rss) / min(rss) - 1, 3)
    cpu0 = [
        e["ours_cpu_us_per_event_latency0"]
        for e in per_size.values()
        if "ours_cpu_us_per_event_latency0" in e
    ]
    if cpu0:
        summary["ours_cpu_us_per_event_latency0_median"] = statistics.median(cpu0)
    summary["targets"] = TARGETS
    return summary


if __name__ == "__main__":
    sys.exit(main())
