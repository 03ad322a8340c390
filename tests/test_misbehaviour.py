"""Misbehaving dependencies seen against main, each on the real local components.

NordPass simulator over real HTTP (a misbehaviour knob per case), the real LogsIngestionClient
against the HTTPS stand-in, the real ManagedIdentityCredential against the token endpoint, Azurite
for the checkpoint. Every run goes through the timer's code path (`run_timer_tick`, health record
included). Each test checks what landed against ground truth (lost 0, duplicates 0), what was set
aside and why, every run's exit code and one line, and that every run ended by itself: a stalled
dependency never answers, so a run that ends with that dependency's error class was cut by its own
timeouts. (The harness abandons a run still going two minutes past its budget: a hang detector, not
a timing claim. How long each run took is a figure, `longest_run_s`, printed with `FAULT_FIGURES`.)

Each test plays its whole scenario first and asserts afterwards, so that the same scenario yields
comparable figures on any version. `FAULT_FIGURES=<file>` appends each case's figures (delivered,
lost, duplicates, set aside, longest run) to that file as JSON lines.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableClient, UpdateMode

from nordpass_connector.adapters.table_store import PARTITION_KEY
from nordpass_connector.checkpoint import Checkpoint
from nordpass_connector.mapping import canonical_digest, event_id
from nordpass_connector.pipeline import run_once
from nordpass_connector.schema import DEFAULT_STREAM_NAME
from sandbox.azurite import ACCOUNT_KEY, ACCOUNT_NAME, REPO_ROOT
from sandbox.blackhole import Blackhole
from sandbox.datagen import EventFactory
from sandbox.token_endpoint import TokenEndpoint
from tests.harness import HUNG_AFTER_SECONDS, Sandbox, TimerRun, expected_ids

HOUR = 3_600
ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def assert_ok(run: TimerRun) -> None:
    assert run.report is not None and run.report.outcome == "ok", (
        run.outcome,
        run.report and run.report.error,
    )
    assert run.exit_code == 0
    line = run.one_line()
    assert line.levelno == logging.INFO and line.getMessage().startswith("nordpass run: ")


def assert_failed(run: TimerRun, error_class: str) -> str:
    assert run.report is not None and run.report.outcome == "failed", run.outcome
    assert run.report.error_class == error_class, run.report.error
    assert run.exit_code == 1
    line = run.one_line()
    assert line.levelno == logging.ERROR
    assert line.getMessage().startswith(f"nordpass run failed: {error_class}: ")
    return line.getMessage()


def assert_ended(sb: Sandbox, runs: list[TimerRun], **overrides: str) -> None:
    budget = float((sb.environ() | overrides)["NORDPASS_RUN_BUDGET_SECONDS"])
    for run in runs:
        assert run.report is not None, (
            f"a run hung: still going {HUNG_AFTER_SECONDS:.0f} s past its {budget:.0f} s budget"
        )


def assert_clean(figures: dict[str, Any], *, set_aside: int = 0) -> None:
    assert (figures["lost"], figures["duplicates"], figures["set_aside"]) == (0, 0, set_aside), figures


def settle(sb: Sandbox, runs: list[TimerRun], ticks: int = 2) -> None:
    """Ticks past the lookback, so everything read so far is settled."""
    runs.extend(sb.timer_tick(600) for _ in range(ticks))


def first_run_requests(sb: Sandbox, run: TimerRun) -> list[Any]:
    pages = run.report.pages if run.report is not None else 0
    return [r for r in sb.sim.query_requests() if r.index < pages]


# -- 1. a page size clamped without saying so ---------------------------------------------------


def test_a_silently_clamped_page_size_is_paged_by_the_data(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    sb.sim.configure(max_per_page=50, hide_page_cap=True)  # metadata: 100 a page, 11 pages
    now = int(sb.clock.now())
    source = f.background(now - 3 * HOUR, now - 61, per_minute=6)
    sb.sim.add(source)
    runs = [sb.timer_tick(0)]
    settle(sb, runs)
    figures = sb.figures("1 clamped page size", source, runs)

    for run in runs:
        assert_ok(run)
    assert runs[0].report is not None and runs[0].report.sent == len(source)
    sb.assert_exactly_once(source)
    assert_clean(figures)
    assert_ended(sb, runs)
    pages = [r.page or 0 for r in first_run_requests(sb, runs[0])]
    assert max(pages) >= math.ceil(len(source) / 50) > 11 + 5, "paged by the data, past the metadata"


# -- 2 and 3. a page that repeats the one before it, or comes back short -------------------------

PAGE_FAULTS: dict[str, dict[str, Any]] = {
    "repeat": {"repeat_page": 3},
    "short": {"short_page": 3, "short_by": 3},
}


def _case(fault: str) -> str:
    return "2" if fault == "repeat" else "3"


@pytest.mark.parametrize("fault", sorted(PAGE_FAULTS))
def test_a_repeated_or_short_page_is_fetched_again(
    sandbox: Sandbox, event_factory: EventFactory, fault: str
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    # Older than the lookback: a page lost here is never read again by a later overlap.
    source = f.background(now - 3 * HOUR, now - 30 * 60, per_minute=6)
    sb.sim.add(source)
    sb.sim.configure(**PAGE_FAULTS[fault])  # fires once
    runs = [sb.timer_tick(0)]
    settle(sb, runs)
    figures = sb.figures(f"{_case(fault)} {fault} page once", source, runs)

    for run in runs:
        assert_ok(run)
    assert any(r.fault == f"{fault}-page" for r in sb.sim.query_requests())
    sb.assert_exactly_once(source)
    assert_clean(figures)
    assert_ended(sb, runs)
    page_three = [r for r in first_run_requests(sb, runs[0]) if r.page == 3]
    assert len(page_three) == 2, "only the faulty page is fetched again, not the whole window"


@pytest.mark.parametrize("fault", sorted(PAGE_FAULTS))
def test_a_window_that_cannot_be_read_is_held_named_and_newer_events_keep_flowing(
    sandbox: Sandbox, event_factory: EventFactory, fault: str
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    history = f.background(now - 3 * HOUR, now - 30 * 60, per_minute=6)
    sb.sim.add(history)
    sb.sim.configure(**PAGE_FAULTS[fault], **{f"{fault}_page_times": None})  # every read, until fixed
    runs = [sb.timer_tick(0)]
    fresh_per_run: list[list[dict[str, Any]]] = [[]]
    for _ in range(7):  # 70 minutes: the window stays unreadable for over an hour
        t = int(sb.clock.now())
        fresh = f.background(t + 1, t + 540, per_minute=2)
        sb.sim.add(fresh)
        fresh_per_run.append(fresh)
        runs.append(sb.timer_tick(600))
    delivered_while_held = set(sb.delivered())
    health_while_held = sb.health()
    sb.sim.configure(**{f"{fault}_page": None})
    runs.append(sb.timer_tick(60))
    settle(sb, runs)
    newer = [e for fresh in fresh_per_run for e in fresh]
    figures = sb.figures(f"{_case(fault)} {fault} page persistent", history + newer, runs)

    for run in runs:
        assert_ok(run)
    first = runs[0].report
    assert first is not None and first.sent == 0
    (held,) = first.held_windows
    assert "page 3" in held["reason"] and held["since"] == first.started_at
    warned = [r.getMessage() for r in runs[0].records if r.levelno == logging.WARNING]
    assert any("held back" in w and held["from"] in w for w in warned), warned
    for run, fresh in zip(runs[1:8], fresh_per_run[1:], strict=True):
        assert run.report is not None and run.report.sent == len(fresh), "newer events keep flowing"
        (still,) = run.report.held_windows
        assert (still["from"], still["to"], still["since"]) == (held["from"], held["to"], held["since"])
    assert still["stuck"] is True and still["held_seconds"] > HOUR
    assert delivered_while_held == set(expected_ids(newer)), "nothing of the held window was sent"
    assert health_while_held["HeldWindows"] == 1 and health_while_held["OldestHeldSince"] == held["since"]
    assert health_while_held["HeldWindow"] == f"{held['from']}/{held['to']}"
    assert "page 3" in health_while_held["HeldReason"]
    released = runs[8].report
    assert released is not None and released.held_windows == [] and released.sent == len(history)
    sb.assert_exactly_once(history + newer)
    assert_clean(figures)
    assert_ended(sb, runs)
    assert sb.health().get("HeldWindows", 0) == 0


# -- 4. lone surrogates ---------------------------------------------------------------------------


def test_lone_surrogates_are_repaired_and_an_unmappable_event_is_set_aside(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - 2 * HOUR, now - 61, per_minute=2)
    for i, event in enumerate(source[::20]):
        event["metadata"]["device_name"] = f"Pixel \U0001f34e{i}"  # half of it arrives
    broken_time = dict(source[5], timestamp="\U0001f550")  # repaired, still not a time
    sb.sim.add(source)
    sb.sim.add([broken_time], at=now - 3000)
    sb.sim.configure(lone_surrogates=True)
    repaired = len(source[::20])

    runs = [sb.timer_tick(0)]
    settle(sb, runs)
    # What NordPass meant minus what it broke: each astral character became U+FFFD.
    served = [json.loads(ASTRAL.sub("\ufffd", json.dumps(e, ensure_ascii=False))) for e in source]
    figures = sb.figures("4 lone surrogates", served, runs)

    for run in runs:
        assert_ok(run)
    assert runs[0].report is not None and runs[0].report.repaired_events == repaired
    assert runs[0].report.set_aside_reasons == {"malformed": 1}
    sb.assert_exactly_once(served)
    assert_clean(figures, set_aside=1)
    (letter,) = sb.dead_letters()
    assert "timestamp is not a whole number of seconds" in letter["Reason"]
    assert letter["ReasonCode"] == "malformed"
    assert_ended(sb, runs)
    rows = [r for r in sb.ingestion.rows() if "device_name" in (r["metadata"] or {})]
    assert len(rows) == repaired and all("\ufffd" in r["metadata"]["device_name"] for r in rows)


# -- 5. one record refused with 400 ---------------------------------------------------------------


def test_a_record_refused_with_400_is_isolated_and_the_rest_delivered(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - 2 * HOUR, now - 30 * 60, per_minute=5)  # one request's worth
    ids = expected_ids(source)
    refused = sorted(i for i in ids if i.endswith("-0") and i[:-1] + "1" not in ids)[100:102]  # no twins
    sb.ingestion.refuse(event_ids=refused, code="InvalidRecord")
    sb.sim.add(source)
    runs = [sb.timer_tick(0)]
    settle(sb, runs)
    delivered = set(sb.delivered())
    accepted = [e for e in source if event_id(canonical_digest(e), 0) not in refused]
    figures = sb.figures("5 one record refused (400)", accepted, runs)

    for run in runs:
        assert_ok(run)
    assert delivered == set(expected_ids(source)) - set(refused)
    assert_clean(figures, set_aside=2)
    letters = sb.dead_letters()
    assert sorted(str(d["EventId"]) for d in letters) == refused
    assert all("HTTP 400 (InvalidRecord)" in str(d["Reason"]) for d in letters)
    assert {d["ReasonCode"] for d in letters} == {"refused"}
    assert runs[0].report is not None and runs[0].report.set_aside_reasons == {"refused": 2}
    bound = 1 + len(refused) * 2 * math.ceil(math.log2(len(source)))
    # Only the events stream: each run also sends its health row, which is no part of the split.
    event_calls = [c for c in sb.ingestion.calls if c.stream == DEFAULT_STREAM_NAME]
    assert len(event_calls) <= bound, "splitting is bounded by about log2(n) per refused record"
    assert_ended(sb, runs)


def test_a_400_for_every_record_fails_the_run_instead_of_setting_everything_aside(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - HOUR, now - 30 * 60, per_minute=2)
    sb.sim.add(source)
    sb.ingestion.refuse(marker=b'"EventId"', code="InvalidStreamSchema")  # every record
    runs = [sb.timer_tick(0)]
    letters_while_refused = sb.dead_letters()
    sb.ingestion.clear_faults()
    runs.append(sb.timer_tick(60))
    figures = sb.figures("5 every record refused (400)", source, runs)

    message = assert_failed(runs[0], "SinkRejected")
    assert "InvalidStreamSchema" in message and "stream declaration" in message
    assert letters_while_refused == []
    assert_ok(runs[1])
    sb.assert_exactly_once(source)
    assert_clean(figures)
    assert_ended(sb, runs)


# -- 6. a dependency that accepts connections and never answers -----------------------------------

STALLS = {  # dependency: the error class the run reports
    "managed identity": "SinkTokenUnavailable",
    "nordpass": "SourceUnavailable",
    "logs ingestion": "SinkUnavailable",
    "table storage": "CheckpointUnavailable",
}


@pytest.mark.parametrize("dependency", list(STALLS))
def test_a_stalled_dependency_ends_the_run_by_its_own_timeouts(
    sandbox: Sandbox, event_factory: EventFactory, token_endpoint: TokenEndpoint, dependency: str
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - HOUR, now - 61, per_minute=1)
    sb.sim.add(source)
    budget = {"NORDPASS_RUN_BUDGET_SECONDS": "5"}
    with Blackhole() as hole:
        stalled = dict(budget)
        if dependency == "managed identity":
            token_endpoint.set_failure("stall")
        elif dependency == "nordpass":
            stalled["NORDPASS_ENDPOINT_URL"] = hole.url(path="/activities/query")
        elif dependency == "logs ingestion":
            stalled["DATA_COLLECTION_ENDPOINT"] = hole.url("https")
        else:
            stalled["AzureWebJobsStorage"] = (
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
                f"TableEndpoint={hole.url(path='/' + ACCOUNT_NAME)};"
            )
        runs = [sb.timer_tick(0, **stalled)]
        token_endpoint.set_failure("none")
    runs.append(sb.timer_tick(60, **budget))
    figures = sb.figures(f"6 stalled {dependency}", source, runs)

    assert_ended(sb, runs, **budget)
    assert_failed(runs[0], STALLS[dependency])
    assert runs[0].report is not None and runs[0].report.sent == 0
    assert_ok(runs[1])
    sb.assert_exactly_once(source)
    assert_clean(figures)


# -- 7. a damaged checkpoint ----------------------------------------------------------------------


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 0x10]) + value[1:]


DAMAGE: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "truncated ledger": ("Ledger0", lambda v: v[:-1]),
    "bit-flipped ledger": ("Ledger0", _flip),
    "floor of the wrong type": ("Floor", lambda v: "soon"),
    "missing ledger chunk": ("LedgerChunks", lambda v: 3),
}


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_named_and_left_as_it_was(
    sandbox: Sandbox, event_factory: EventFactory, damage: str
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - 800, now - 61, per_minute=6)  # inside the lookback: in the ledger
    sb.sim.add(source)
    runs = [sb.timer_tick(0)]
    table = TableClient.from_connection_string(sb.azurite.connection_string, sb.table)
    original = table.get_entity(PARTITION_KEY, "default")
    name, change = DAMAGE[damage]
    damaged = dict(original)
    damaged[name] = change(_plain(original[name]))
    table.update_entity(damaged, mode=UpdateMode.REPLACE)
    before = table.get_entity(PARTITION_KEY, "default")
    later = f.background(now + 1, now + 50, per_minute=6)
    sb.sim.add(later)
    runs.append(sb.timer_tick(60))
    after = table.get_entity(PARTITION_KEY, "default")
    table.update_entity(original, mode=UpdateMode.REPLACE)  # an operator restores the row
    runs.append(sb.timer_tick(60))
    figures = sb.figures(f"7 {damage}", source + later, runs)

    assert_ok(runs[0])
    message = assert_failed(runs[1], "CheckpointDamaged")
    assert f"'{sb.table}/checkpoint/default'" in message and f"property {name}" in message
    assert after.metadata["etag"] == before.metadata["etag"], "the damaged row was written"
    assert runs[1].report is not None and runs[1].report.sent == 0
    assert_ok(runs[2])
    sb.assert_exactly_once(source + later)
    assert_clean(figures)
    assert_ended(sb, runs)


def test_a_damaged_health_row_is_named_and_left_as_it_was(
    sandbox: Sandbox, event_factory: EventFactory
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - 800, now - 61, per_minute=2)
    sb.sim.add(source)
    runs = [sb.timer_tick(0)]
    table = TableClient.from_connection_string(sb.azurite.connection_string, sb.table)
    row = dict(table.get_entity(PARTITION_KEY, "default.health"))
    row["ConsecutiveFailures"] = "three"
    table.update_entity(row, mode=UpdateMode.REPLACE)
    before = table.get_entity(PARTITION_KEY, "default.health")
    runs.append(sb.timer_tick(60))
    after = table.get_entity(PARTITION_KEY, "default.health")
    figures = sb.figures("7 damaged health row", source, runs)

    assert_ok(runs[1])  # the health record is advisory: the run itself is not held up
    assert after.metadata["etag"] == before.metadata["etag"], "the damaged health row was rewritten"
    warnings = [r.getMessage() for r in runs[1].records if r.levelno == logging.WARNING]
    assert any("default.health" in w and "ConsecutiveFailures" in w for w in warnings), warnings
    assert_clean(figures)


# -- 8. a held lease is busy, not a failure -------------------------------------------------------


class Crash(BaseException):
    """The process dies here."""


def test_a_run_that_finds_the_lease_held_is_busy_not_failed(
    sandbox: Sandbox, event_factory: EventFactory, tmp_path: Path
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - 6 * HOUR, now - 61, per_minute=3)
    sb.sim.add(source)
    sb.overrides["NORDPASS_MAX_WINDOW_EVENTS"] = "300"
    with sb.connector() as c:
        real_send, calls = c.sink.send, {"n": 0}

        def send_then_die(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 2:
                raise Crash("killed mid-run")
            return real_send(*args, **kwargs)

        c.sink.send = send_then_die  # type: ignore[method-assign]
        with pytest.raises(Crash):
            run_once(c)
    table = TableClient.from_connection_string(sb.azurite.connection_string, sb.table)
    blocked_for = int(_plain(table.get_entity(PARTITION_KEY, "default")["LeaseUntil"])) - int(sb.clock.now())

    # The command line, on the real clock (inside the dead run's lease too).
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": sb.environ()}), encoding="utf-8")
    cli = subprocess.run(
        [sys.executable, "-m", "nordpass_connector", "run", "--once", "--settings", str(settings)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        cwd=REPO_ROOT,
        check=False,
    )
    runs = [sb.timer_tick(1)]  # the timer, inside the dead run's lease
    health_while_busy = sb.health()
    for _ in range(10):
        runs.append(sb.timer_tick(max(blocked_for, 1)))
        if runs[-1].report is None or (runs[-1].report.outcome != "busy" and runs[-1].report.caught_up):
            break
    figures = sb.figures("8 held lease", source, runs, blocked_s=blocked_for, cli_exit=cli.returncode)

    assert cli.returncode == 0, cli.stderr[-2000:]
    (stdout_line,) = cli.stdout.splitlines()
    assert json.loads(stdout_line)["outcome"] == "busy"
    logged = [line for line in cli.stderr.splitlines() if " nordpass_connector" in line]
    assert len(logged) == 1 and " INFO nordpass_connector: " in logged[0], cli.stderr
    assert "Traceback" not in cli.stderr
    busy = runs[0]
    assert busy.report is not None and busy.report.outcome == "busy" and busy.report.sent == 0
    assert busy.exit_code == 0
    line = busy.one_line()
    assert line.levelno == logging.INFO and "busy" in line.getMessage()
    assert health_while_busy.get("ConsecutiveFailures", 0) == 0
    assert health_while_busy["ConsecutiveBusy"] == 2 and health_while_busy.get("LastOutcome") != "failed"
    for run in runs[1:]:
        assert_ok(run)
    assert sb.health()["ConsecutiveBusy"] == 0
    # In Sentinel too: the command line's and the timer's busy runs are rows of their own, and no
    # run is a failure (the "runs keep failing" rule leaves busy runs out).
    outcomes = [r["Outcome"] for r in sb.ingestion.health_rows()]
    assert outcomes[:2] == ["busy", "busy"] and set(outcomes[2:]) == {"ok"}, outcomes
    sb.assert_exactly_once(source)
    assert_clean(figures)
    assert_ended(sb, runs)
    assert blocked_for <= 45, "a killed run blocks the next ones for one short lease, not budget + 60 s"


def test_a_live_run_renews_its_lease_while_it_waits(sandbox: Sandbox, event_factory: EventFactory) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    sb.sim.add(f.background(now - HOUR, now - 61, per_minute=1))
    commits: list[int] = []
    with sb.connector() as c:
        c.options = dataclasses.replace(c.options, lease_renew_seconds=0.2)
        real_send, real_commit = c.sink.send, c.store.commit

        def slow_send(*args: Any, **kwargs: Any) -> Any:
            time.sleep(1.0)  # an upload that takes five renewal periods
            return real_send(*args, **kwargs)

        def counted_commit(checkpoint: Checkpoint, *, etag: str) -> str:
            commits.append(checkpoint.lease_until)
            return real_commit(checkpoint, etag=etag)

        c.sink.send = slow_send  # type: ignore[method-assign]
        c.store.commit = counted_commit  # type: ignore[method-assign]
        report = run_once(c)
    assert report.outcome == "ok" and report.sent > 0 and report.windows == 1
    # Claim, window completion and release are three commits; the rest renewed the lease.
    assert len(commits) - 3 >= 2, commits
    assert commits[-1] == 0 and all(until == now + 40 for until in commits[:-1])
