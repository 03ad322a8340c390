"""What the connector costs each month, from measured figures and list prices (issue 14).

Three bills, for organisations of 1,000, 100,000 and 1,000,000 NordPass events a day:

- **compute** (Flex Consumption, on demand): instance memory x billed duration of every timer
  execution x 43,200 ticks a month, against the monthly free grant. The durations are measured
  (`bench.freshness` steady state at that event rate, the real timer path against the stand-ins
  at realistic latencies) and billed as Flex bills them: at least `FLEX_MIN_BILLED_SECONDS`, then
  rounded up to `FLEX_BILLING_STEP_SECONDS`. A smaller instance has fewer cores: its duration is
  the measured one plus the measured CPU time stretched to its share of a core (pessimistic: as if
  no CPU work overlapped a wait);
- **Application Insights**: the records a healthy tick logs (ours measured from the real records
  the timer path emits at the default level; the Functions host's own per-invocation records from
  the table below, filtered by `host.json` as the host filters them), each counted as its message
  bytes plus `APP_INSIGHTS_RECORD_OVERHEAD_BYTES`;
- **Log Analytics**: billed bytes per row, ours and the official connector's, under the documented
  rule (`billed_bytes`), for a sample of rows produced by the real mapping path.

Every price is a named constant with its source and the date it was read (`SOURCES`).
"""

from __future__ import annotations

import json
import math
import statistics
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from nordpass_connector import schema

REPO = Path(__file__).resolve().parent.parent

# -- list prices and platform rules (USD, pay-as-you-go, region East US) --------------------------

FLEX_USD_PER_GB_SECOND = 0.000026  # on-demand execution time
FLEX_USD_PER_MILLION_EXECUTIONS = 0.40  # on-demand executions
FLEX_FREE_GB_SECONDS_PER_MONTH = 100_000  # on-demand free grant, per subscription
FLEX_FREE_EXECUTIONS_PER_MONTH = 250_000
FLEX_MIN_BILLED_SECONDS = 1.0  # "minimum billable execution period ... 1,000 ms"
FLEX_BILLING_STEP_SECONDS = 0.1  # "... rounded up to the nearest 100 ms"
# Instance sizes Flex offers (MB) and their typical cores.
FLEX_INSTANCE_CORES: Mapping[int, float] = {512: 0.25, 2048: 1.0, 4096: 2.0}
LOG_ANALYTICS_USD_PER_GB = 2.30  # Analytics plan ingestion; GB = 10^9 bytes
LOG_ANALYTICS_FREE_GB_PER_MONTH = 5  # per billing account, shared by everything it ingests
TICKS_PER_MONTH = 43_200  # one timer execution a minute, 30 days
DAYS_PER_MONTH = 30
ORG_EVENTS_PER_DAY = (1_000, 100_000, 1_000_000)
# Memory the instance must keep free beyond the measured peak: the 1M backfill's peak must fit at
# least twice (the Functions host and the Python worker's own runtime come on top of our RSS).
MEMORY_HEADROOM = 2.0
# Standard columns of one AppTraces / AppRequests / AppMetrics row besides its message (timestamps,
# operation and invocation ids, role name and instance, SDK version, resource GUID, client fields,
# the Properties bag with category, log level, host instance id): estimated, not measured here.
APP_INSIGHTS_RECORD_OVERHEAD_BYTES = 600
ROW_SAMPLE_EVENTS = 20_000

SOURCES: tuple[dict[str, str], ...] = (
    {
        "what": "Flex Consumption on-demand execution time USD 0.000026/GB-s, executions USD 0.40/million",
        "source": "learn.microsoft.com/azure/azure-functions/functions-consumption-costs (Flex tab, "
        "ms.date 2025-02-10; the same rates on azure.microsoft.com/pricing/details/functions, East US)",
        "date": "read 2026-12-04",
    },
    {
        "what": "Flex Consumption on-demand free grant 100,000 GB-s and 250,000 executions a month",
        "source": "azure.microsoft.com/pricing/details/functions (Flex Consumption, pay-as-you-go)",
        "date": "read 2026-12-04",
    },
    {
        "what": "minimum billable execution 1,000 ms, then rounded up to 100 ms; instance sizes 512 MB "
        "(0.25 core), 2,048 MB (1 core), 4,096 MB (2 cores), billed on the configured size",
        "source": "learn.microsoft.com/azure/azure-functions/flex-consumption-plan (Billing; Instance "
        "sizes; ms.date 2025-05-12)",
        "date": "read 2026-12-04",
    },
    {
        "what": "Log Analytics Analytics-plan ingestion USD 2.30/GB, first 5 GB a month free per billing "
        "account; workspace-based Application Insights is billed by its workspace on the same meter",
        "source": "azure.microsoft.com/pricing/details/monitor (East US, pay-as-you-go), and "
        "learn.microsoft.com/azure/azure-monitor/logs/cost-logs (Application Insights billing)",
        "date": "read 2026-12-04",
    },
    {
        "what": "billed size of a record: a string representation of its column entries; the standard "
        "columns _ResourceId, _SubscriptionId, _ItemId, _IsBillable, _BilledSize, _TenantId, Type are "
        "excluded; GB = 10^9 bytes",
        "source": "learn.microsoft.com/azure/azure-monitor/logs/cost-logs (Data size calculation, "
        "ms.date 2024-12-09)",
        "date": "read 2026-12-04",
    },
    {
        "what": "host log categories: Function.<name> (Executing/Executed traces), Function.<name>.User "
        "(our logs), Host.Results (requests), Host.Aggregator (customMetrics every 30 s); language-worker "
        "logs do not reach Application Insights",
        "source": "learn.microsoft.com/azure/azure-functions/configure-monitoring (Configure categories); "
        "Azure/azure-functions-host#9360",
        "date": "read 2026-12-04",
    },
)

BILLING_RULE = (
    "a row is billed for the UTF-8 length of each stored column value as text: strings as they are, "
    "long as its decimal digits, datetime as ISO 8601 to the second (20 characters; the sensitivity "
    "with 28, 'yyyy-MM-ddTHH:mm:ss.fffffffZ', is given too), dynamic as its compact JSON; a null or "
    "empty value stores no entry and costs nothing; column names and JSON syntax are not billed"
)

FUNCTION_NAME = "nordpass_to_sentinel"
# host.json as it was before issue 14, for the before/after of the host's own records.
HOST_LOG_LEVELS_BEFORE: Mapping[str, str] = {
    "default": "Information",
    "Host.Results": "Information",
    "Function": "Information",
    "Host.Aggregator": "Information",
}
HOST_LEVELS = {"Trace": 0, "Debug": 1, "Information": 2, "Warning": 3, "Error": 4, "Critical": 5, "None": 6}


# -- Log Analytics: billed bytes per row ---------------------------------------------------------

_TYPES = {c.name: c.type for c in schema.COLUMNS}
_HEALTH_TYPES = {c.name: c.type for c in schema.HEALTH_COLUMNS}


def billed_bytes(
    row: Mapping[str, Any], *, datetime_chars: int = 20, types: Mapping[str, str] = _TYPES
) -> int:
    """The billed size of one stored row under `BILLING_RULE` (`types`: its table's column types)."""
    total = 0
    for name, value in row.items():
        if value is None or value == "" or value == {} or value == []:
            continue
        kind = types[name]
        if kind == "datetime":
            total += datetime_chars
        elif kind == "dynamic":
            total += len(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        elif kind == "long":
            total += len(str(value))
        else:
            total += len(str(value).encode())
    return total


def _sample_rows() -> list[dict[str, Any]]:
    """Rows as the connector sends them, through the real selection path (fast path included)."""
    from nordpass_connector.dedup import select_new
    from nordpass_connector.ledger import Ledger

    from .events import stamped

    events = [
        orjson.loads(blob) for _, blob in stamped(ROW_SAMPLE_EVENTS, start=1_767_225_600, end=1_767_312_000)
    ]
    rows = select_new(events, Ledger()).rows
    # What reaches the service: the JSON we send, parsed back (omitted columns are stored as null).
    return [orjson.loads(orjson.dumps(row)) for row in rows]


def health_row_billed_bytes() -> int:
    """The billed size of a healthy tick's row in `NordPassConnectorHealth_CL` (one a run, 43,200 a
    month whatever the event rate), built by the connector's own `health.health_row` from an ok
    run that delivered 100 events."""
    from nordpass_connector import __version__
    from nordpass_connector.health import HealthRecord, health_row
    from nordpass_connector.report import RunReport

    start = 1_767_255_996
    report = RunReport(
        run_id="3f2a9c1b7d4e",
        started_at="2026-01-01T08:26:36Z",
        outcome="ok",
        caught_up=True,
        windows=1,
        pages=2,
        fetched=100,
        sent=100,
        ingestion_requests=1,
        ingestion_bytes=9_652,
        checkpoint_after={"floor": "2025-12-25T08:26:36Z", "done_to": "2026-01-01T08:26:34Z"},
        newest_event="2026-01-01T08:26:31Z",
        lag_seconds=5.3,
        duration_seconds=0.31,
    )
    record = HealthRecord(last_success_at="2026-01-01T08:26:36Z", consecutive_failures=0)
    row = health_row(now=start + 1, instance="default", version=__version__, report=report, record=record)
    return billed_bytes(row, types=_HEALTH_TYPES)


def official_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The official connector's row for the same event: its nine columns, same values (its DCR sets
    TimeGenerated to the ingestion time, a datetime of the same size)."""
    return {c.name: row.get(c.name) for c in schema.OFFICIAL_COLUMNS}


def row_sizes() -> dict[str, Any]:
    rows = _sample_rows()
    ours = [billed_bytes(r) for r in rows]
    official = [billed_bytes(official_row(r)) for r in rows]
    ours28 = [billed_bytes(r, datetime_chars=28) for r in rows]
    official28 = [billed_bytes(official_row(r), datetime_chars=28) for r in rows]
    by_column: dict[str, float] = {}
    for name in schema.COLUMN_NAMES:
        by_column[name] = round(statistics.mean(billed_bytes({name: r.get(name)}) for r in rows), 1)
    # The typical row: the one whose billed size is the median of ours.
    typical = sorted(rows, key=billed_bytes)[len(rows) // 2]
    mean_ours, mean_official = statistics.mean(ours), statistics.mean(official)
    return {
        "rule": BILLING_RULE,
        "sample_rows": len(rows),
        "ours_billed_bytes_mean": round(mean_ours, 1),
        "official_billed_bytes_mean": round(mean_official, 1),
        "ours_over_official": round(mean_ours / mean_official - 1, 4),
        "ours_billed_bytes_median": statistics.median(ours),
        "official_billed_bytes_median": statistics.median(official),
        "ours_over_official_with_28_char_datetimes": round(
            statistics.mean(ours28) / statistics.mean(official28) - 1, 4
        ),
        "ours_sent_json_bytes_mean": round(
            statistics.mean(len(orjson.dumps(r, option=orjson.OPT_SORT_KEYS)) for r in rows), 1
        ),
        "billed_bytes_by_column_mean": by_column,
        "typical_row_ours": typical,
        "typical_row_ours_billed_bytes": billed_bytes(typical),
        "typical_row_official": official_row(typical),
        "typical_row_official_billed_bytes": billed_bytes(official_row(typical)),
    }


# -- compute ---------------------------------------------------------------------------------------


def billed_seconds(seconds: float) -> float:
    steps = math.ceil(round(seconds / FLEX_BILLING_STEP_SECONDS, 6))
    return max(FLEX_MIN_BILLED_SECONDS, steps * FLEX_BILLING_STEP_SECONDS)


def compute_cost(ticks: Sequence[Mapping[str, Any]], memory_mb: int) -> dict[str, Any]:
    """Monthly compute for one instance size, from measured ticks (wall and CPU seconds)."""
    cores = FLEX_INSTANCE_CORES[memory_mb]
    stretch = max(0.0, 1 / cores - 1)
    durations = [t["seconds"] + t["cpu_seconds"] * stretch for t in ticks]
    billed = [billed_seconds(d) for d in durations]
    gb_seconds = memory_mb / 1024 * statistics.mean(billed) * TICKS_PER_MONTH
    over = max(0.0, gb_seconds - FLEX_FREE_GB_SECONDS_PER_MONTH)
    executions_over = max(0, TICKS_PER_MONTH - FLEX_FREE_EXECUTIONS_PER_MONTH)
    return {
        "instance_memory_mb": memory_mb,
        "duration_seconds_mean": round(statistics.mean(durations), 3),
        "billed_seconds_mean": round(statistics.mean(billed), 3),
        "gb_seconds_per_month": round(gb_seconds),
        "free_grant_gb_seconds": FLEX_FREE_GB_SECONDS_PER_MONTH,
        "within_free_grant": gb_seconds <= FLEX_FREE_GB_SECONDS_PER_MONTH,
        "usd_per_month": round(
            over * FLEX_USD_PER_GB_SECOND + executions_over / 1e6 * FLEX_USD_PER_MILLION_EXECUTIONS, 2
        ),
    }


def smallest_safe_memory(peak_rss_mb: float) -> int:
    return min(size for size in FLEX_INSTANCE_CORES if size >= peak_rss_mb * MEMORY_HEADROOM)


def template_memory_mb() -> int:
    from deploy.build_template import INSTANCE_MEMORY_MB

    return INSTANCE_MEMORY_MB


# -- Application Insights --------------------------------------------------------------------------


def host_log_levels() -> dict[str, str]:
    return dict(json.loads((REPO / "host.json").read_text())["logging"]["logLevel"])


def host_level_for(category: str, levels: Mapping[str, str]) -> int:
    """The host's rule: the longest configured prefix of the category wins, else `default`."""
    best = ""
    for key in levels:
        if key != "default" and (category == key or category.startswith(key + ".")) and len(key) > len(best):
            best = key
    return HOST_LEVELS[levels[best] if best else levels.get("default", "Information")]


def host_records() -> list[tuple[str, str, int]]:
    """(category, what, message bytes) of what the Functions host itself records per invocation."""
    invocation = str(uuid.UUID(int=0x8F3D2A61_0C4B_4E7A_9B51_2D6E8F0A1C3B))
    executing = (
        f"Executing 'Functions.{FUNCTION_NAME}' (Reason='Timer fired at "
        f"2026-12-03T12:41:00.0012345+00:00', Id={invocation})"
    )
    executed = f"Executed 'Functions.{FUNCTION_NAME}' (Succeeded, Id={invocation}, Duration=412ms)"
    aggregate = [f"{FUNCTION_NAME} {m}" for m in ("Count", "Successes", "Failures", "SuccessRate")] + [
        f"{FUNCTION_NAME} {m}Duration" for m in ("Min", "Max", "Avg")
    ]
    return [
        (f"Function.{FUNCTION_NAME}", "trace: " + executing[:40] + "...", len(executing)),
        (f"Function.{FUNCTION_NAME}", "trace: " + executed[:40] + "...", len(executed)),
        ("Host.Results", "request (one per invocation)", len(FUNCTION_NAME)),
        *[("Host.Aggregator", f"customMetric {name}", len(name)) for name in aggregate],
    ]


def app_insights(
    our_records: Sequence[Sequence[Any]], levels: Mapping[str, str], *, ticks: int
) -> dict[str, Any]:
    """Bytes a tick sends to Application Insights: our records (level name, logger, message bytes,
    all ticks of a run) and the host's, each filtered by `levels` and counted with the overhead."""
    user_category = f"Function.{FUNCTION_NAME}.User"
    ours = [
        r
        for r in our_records
        if HOST_LEVELS.get(_host_level(r[0]), 2) >= host_level_for(user_category, levels)
    ]
    host = [r for r in host_records() if HOST_LEVELS["Information"] >= host_level_for(r[0], levels)]
    per_tick_records = len(ours) / ticks + len(host)
    per_tick_bytes = sum(r[2] + APP_INSIGHTS_RECORD_OVERHEAD_BYTES for r in ours) / ticks + sum(
        r[2] + APP_INSIGHTS_RECORD_OVERHEAD_BYTES for r in host
    )
    gb = per_tick_bytes * TICKS_PER_MONTH / 1e9
    return {
        "records_per_tick": round(per_tick_records, 2),
        "our_records_per_tick": round(len(ours) / ticks, 2),
        "our_message_bytes_per_tick": round(sum(r[2] for r in ours) / ticks),
        "host_records_per_tick": len(host),
        "bytes_per_tick": round(per_tick_bytes),
        "gb_per_month": round(gb, 3),
        "usd_per_month": round(gb * LOG_ANALYTICS_USD_PER_GB, 2),
    }


def _host_level(python_level: str) -> str:
    return {"CRITICAL": "Critical", "ERROR": "Error", "WARNING": "Warning", "INFO": "Information"}.get(
        python_level, "Debug"
    )


# -- the table -----------------------------------------------------------------------------------


def summarise(
    steady: Mapping[int, Mapping[str, Any]],
    *,
    peak_rss_1m_mb: float | None,
) -> dict[str, Any]:
    """The cost table. `steady` maps events a day to a `bench.freshness.measure` result at that rate
    (its `ticks_detail` holds every tick's wall and CPU seconds and log records)."""
    rows = row_sizes()
    health_bytes = health_row_billed_bytes()
    health_gb = health_bytes * TICKS_PER_MONTH / 1e9
    levels_now = host_log_levels()
    peaks = [r["peak_rss_mb"] for r in steady.values()]
    peak = max([*peaks, *([peak_rss_1m_mb] if peak_rss_1m_mb else [])])
    chosen = template_memory_mb()
    sizes: dict[str, Any] = {}
    for per_day, result in sorted(steady.items()):
        ticks = [t for t in result["ticks_detail"] if t["tick"] > 0]  # tick 0 backfills empty history
        records = [r for t in ticks for r in t["log_records"]]
        la_gb_ours = per_day * DAYS_PER_MONTH * rows["ours_billed_bytes_mean"] / 1e9
        la_gb_official = per_day * DAYS_PER_MONTH * rows["official_billed_bytes_mean"] / 1e9
        sizes[f"{per_day}"] = {
            "events_per_tick": round(per_day / 1440, 1),
            "run_seconds_mean": round(statistics.mean(t["seconds"] for t in ticks), 3),
            "cpu_seconds_mean": round(statistics.mean(t["cpu_seconds"] for t in ticks), 4),
            "compute": {f"{mb}MB": compute_cost(ticks, mb) for mb in sorted({2048, chosen})},
            "app_insights": {
                "host_json_now": app_insights(records, levels_now, ticks=len(ticks)),
                "host_json_before_issue_14": app_insights(records, HOST_LOG_LEVELS_BEFORE, ticks=len(ticks)),
            },
            "log_analytics": {
                "ours_gb_per_month": round(la_gb_ours, 3),
                "official_gb_per_month": round(la_gb_official, 3),
                "ours_usd_per_month": round(la_gb_ours * LOG_ANALYTICS_USD_PER_GB, 2),
                "official_usd_per_month": round(la_gb_official * LOG_ANALYTICS_USD_PER_GB, 2),
                # One health row a tick (issue 13), on top of the events, whatever the rate.
                "health_rows_billed_bytes_each": health_bytes,
                "health_rows_gb_per_month": round(health_gb, 4),
                "health_rows_usd_per_month": round(health_gb * LOG_ANALYTICS_USD_PER_GB, 2),
            },
        }
    return {
        "prices": {
            "flex_usd_per_gb_second": FLEX_USD_PER_GB_SECOND,
            "flex_usd_per_million_executions": FLEX_USD_PER_MILLION_EXECUTIONS,
            "flex_free_gb_seconds_per_month": FLEX_FREE_GB_SECONDS_PER_MONTH,
            "flex_free_executions_per_month": FLEX_FREE_EXECUTIONS_PER_MONTH,
            "flex_min_billed_seconds": FLEX_MIN_BILLED_SECONDS,
            "log_analytics_usd_per_gb": LOG_ANALYTICS_USD_PER_GB,
            "log_analytics_free_gb_per_month_per_billing_account": LOG_ANALYTICS_FREE_GB_PER_MONTH,
            "app_insights_record_overhead_bytes": APP_INSIGHTS_RECORD_OVERHEAD_BYTES,
            "currency_region": "USD, East US, pay-as-you-go list prices",
            "sources": list(SOURCES),
        },
        "memory": {
            "template_instance_memory_mb": chosen,
            "peak_rss_mb": peak,
            "peak_rss_1m_backfill_mb": peak_rss_1m_mb,
            "smallest_safe_instance_mb": smallest_safe_memory(peak),
            "headroom": round(chosen / peak, 1),
        },
        "rows": rows,
        "sizes": sizes,
        "targets": {
            "compute_100k_within_free_grant": sizes.get("100000", {})
            .get("compute", {})
            .get(f"{chosen}MB", {})
            .get("within_free_grant"),
            "rows_over_official_at_most": 0.10,
            "rows_over_official": rows["ours_over_official"],
        },
    }
