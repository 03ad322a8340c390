"""The health record: pure merging rules, then the record as real runs leave it (success, failure,
recovery), the `status` command, and the one log line per run."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from nordpass_connector import cli, composition
from nordpass_connector.errors import CheckpointUnavailable, SourceAuthError
from nordpass_connector.health import (
    HealthRecord,
    merge_crash,
    merge_report,
    render,
    run_summary,
)
from nordpass_connector.isotime import parse_iso
from nordpass_connector.pipeline import RunFailed
from nordpass_connector.ports import SetAsideRecord, Window
from nordpass_connector.report import RunReport
from nordpass_connector.settings import load_settings
from sandbox.datagen import EventFactory
from tests.doubles import MemoryHealthStore
from tests.harness import FAST_RETRIES, Sandbox

T0 = 1_700_000_000


def report(**changes: Any) -> RunReport:
    r = RunReport(run_id="r1", started_at="2023-11-14T22:13:20Z")
    for name, value in changes.items():
        setattr(r, name, value)
    return r


# -- pure rules ----------------------------------------------------------------------------------


def test_success_resets_failures_and_moves_last_success() -> None:
    failing = HealthRecord(consecutive_failures=3, last_error_class="SinkAuthError", last_error="x")
    ok = report(outcome="ok", sent=12, caught_up=True, newest_event="2023-11-14T22:12:20Z", retries={"a": 2})
    record = merge_report(failing, ok, now=T0)
    assert record.consecutive_failures == 0
    assert record.last_outcome == "ok" and record.healthy
    assert record.last_success_at == "2023-11-14T22:13:20Z"
    assert record.events_delivered_last_run == 12
    assert record.retries_last_run == 2
    assert record.lag_seconds == 60.0
    assert record.caught_up is True
    assert record.last_error_class == "SinkAuthError", "the last error is kept for reference"


def test_failures_count_up_and_keep_the_last_success() -> None:
    ok = merge_report(None, report(outcome="ok", newest_event="2023-11-14T22:00:00Z"), now=T0)
    failed = report(outcome="failed", error="SourceAuthError: no -> fix it", error_class="SourceAuthError")
    once = merge_report(ok, failed, now=T0 + 60)
    twice = merge_report(once, failed, now=T0 + 120)
    assert (once.consecutive_failures, twice.consecutive_failures) == (1, 2)
    assert twice.last_success_at == ok.last_success_at
    assert twice.last_error == "SourceAuthError: no -> fix it"
    assert twice.last_error_at == "2023-11-14T22:15:20Z"
    assert twice.newest_event == "2023-11-14T22:00:00Z", "a failed run keeps the newest delivered event"
    assert twice.lag_seconds == 920.0, "lag keeps growing while runs fail"
    assert twice.caught_up is False


def test_conflict_neither_counts_as_failure_nor_resets() -> None:
    prev = HealthRecord(consecutive_failures=2)
    record = merge_report(
        prev, report(outcome="conflict", error_class="CheckpointConflict", error="e"), now=T0
    )
    assert record.consecutive_failures == 2
    assert record.last_outcome == "conflict"
    assert record.last_error_class == "CheckpointConflict"


def test_crash_records_the_class_but_not_the_message() -> None:
    record = merge_crash(HealthRecord(consecutive_failures=1), run_id=None, error_class="KeyError", now=T0)
    assert record.last_outcome == "crashed"
    assert record.consecutive_failures == 2
    assert record.last_error_class == "KeyError"
    assert "traceback" in (record.last_error or "")


def test_long_error_text_is_bounded() -> None:
    record = merge_report(None, report(outcome="failed", error="x" * 5000, error_class="E"), now=T0)
    assert len(record.last_error or "") == 1000


def test_fields_round_trip_and_tolerate_damage() -> None:
    record = merge_report(
        None,
        report(outcome="ok", sent=3, newest_event="2023-11-14T22:13:00Z", skipped_gap=["a", "b"]),
        now=T0,
    )
    fields = record.to_fields()
    assert fields["HealthVersion"] == 1
    assert fields["ConsecutiveFailures"] == 0 and fields["LastOutcome"] == "ok"
    assert "LastError" not in fields, "unknown values are absent, not null"
    assert HealthRecord.from_fields(fields) == record
    damaged = fields | {"ConsecutiveFailures": "three", "LagSeconds": "soon", "Unknown": 1}
    survived = HealthRecord.from_fields(damaged)
    assert survived is not None
    assert (survived.consecutive_failures, survived.lag_seconds) == (0, None), "bad values fall back"
    assert survived.last_outcome == "ok"
    assert HealthRecord.from_fields(None) is None


def test_render_for_people() -> None:
    record = merge_report(
        None,
        report(
            outcome="failed",
            error="SinkAuthError: 403 -> grant the role",
            error_class="SinkAuthError",
            newest_event="2023-11-14T21:13:20Z",
        ),
        now=T0,
    )
    text = "\n".join(render(record, now=T0, instance="default"))
    assert "last run              failed at 2023-11-14T22:13:20Z (run r1)" in text
    assert "last success          never" in text
    assert "consecutive failures  1" in text
    assert "lag now               60 min" in text
    assert "SinkAuthError: 403 -> grant the role" in text
    assert render(None, now=T0, instance="x")[0].startswith("instance x: no health record yet")


def test_run_summary_has_window_counts_retries_duration_and_lag() -> None:
    r = report(
        outcome="ok",
        pages=4,
        fetched=10,
        sent=9,
        retries={"nordpass:429": 2, "ingestion:5xx": 1},
        duration_seconds=1.5,
        lag_seconds=61.0,
        checkpoint_before={"floor": "A", "done_to": "B"},
        checkpoint_after={"floor": "A", "done_to": "C"},
    )
    summary = run_summary(r)
    assert summary["window"] == {"from": "B", "to": "C"}
    assert summary["retries"] == {"nordpass:429": 2, "ingestion:5xx": 1}
    assert summary["retries_total"] == 3
    for key in ("pages", "fetched", "sent", "deduplicated", "set_aside", "duration_seconds", "lag_seconds"):
        assert key in summary


# -- real runs -----------------------------------------------------------------------------------


def run(sb: Sandbox, advance: float = 60, *, health_store: MemoryHealthStore | None = None) -> RunReport:
    sb.clock.advance(advance)
    env = dict(os.environ) | sb.environ()
    return composition.run_from_environment(
        env, clock=sb.clock, retry_policy=FAST_RETRIES, health_store=health_store
    )


def read_health(sb: Sandbox) -> HealthRecord:
    env = sb.environ()
    store = composition.build_store(load_settings(env), env)
    record = HealthRecord.from_fields(store.read_health())
    assert record is not None
    return record


def test_health_after_success_failure_and_recovery(sandbox: Sandbox, event_factory: EventFactory) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    sb.sim.add(f.background(now - 3600, now - 120, per_minute=1))

    first = run(sb, 0)
    h = read_health(sb)
    assert (h.last_outcome, h.consecutive_failures, h.last_run_id) == ("ok", 0, first.run_id)
    assert h.events_delivered_last_run == first.sent > 0
    assert h.newest_event == first.newest_event
    assert h.lag_seconds is not None and 0 < h.lag_seconds < 600
    assert h.caught_up is True
    assert h.last_success_at == h.last_run_at
    assert h.last_error_class is None
    success_at = parse_iso(h.last_success_at)

    sb.sim.configure(auth_status=401)
    for expected in (1, 2):
        with pytest.raises(RunFailed) as failed:
            run(sb)
        h = read_health(sb)
        assert h.last_outcome == "failed"
        assert h.consecutive_failures == expected
        assert h.last_error_class == "SourceAuthError"
        assert h.last_error == failed.value.cause.describe()
        assert SourceAuthError.action in (h.last_error or "")
        assert parse_iso(h.last_success_at) == success_at, "a failure does not move the last success"
        assert h.events_delivered_last_run == 0
        assert h.caught_up is False

    sb.sim.configure(auth_status=None)
    t = int(sb.clock.now())
    sb.sim.add(f.background(t - 60, t + 50, per_minute=5))
    recovered = run(sb)
    h = read_health(sb)
    assert h.last_outcome == "ok"
    assert h.consecutive_failures == 0
    assert parse_iso(h.last_success_at) == parse_iso(h.last_run_at) > success_at  # type: ignore[operator]
    assert h.last_run_id == recovered.run_id
    assert h.events_delivered_last_run == recovered.sent > 0
    assert h.last_error_class == "SourceAuthError", "kept for reference; status marks it resolved"


def test_a_failing_health_write_masks_nothing(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    broken = MemoryHealthStore(
        write_error=CheckpointUnavailable("checkpoint health write failed: ServiceRequestError")
    )
    caplog.set_level(logging.WARNING, logger="nordpass_connector")
    assert run(sandbox, 0, health_store=broken).outcome == "ok", "a delivered run stays a success"
    assert "could not write the health record" in caplog.text
    assert broken.reads == 1, "the run did try to keep its record"

    sandbox.sim.configure(auth_status=401)
    with pytest.raises(RunFailed) as failed:
        run(sandbox, health_store=broken)
    assert isinstance(failed.value.cause, SourceAuthError), "the run's own error, not the health write's"

    exploding = MemoryHealthStore(write_error=TypeError("bug"))
    with pytest.raises(RunFailed) as again:
        run(sandbox, health_store=exploding)
    assert isinstance(again.value.cause, SourceAuthError)
    assert exploding.reads == 1


def test_status_command_text_json_and_exit_codes(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": sandbox.environ()}))

    assert cli.main(["status", "--settings", str(settings)]) == 1
    assert "no health record yet" in capsys.readouterr().out

    ok = run(sandbox, 0)
    assert cli.main(["status", "--settings", str(settings)]) == 0
    out = capsys.readouterr().out
    assert f"(run {ok.run_id})" in out
    assert "consecutive failures  0" in out
    assert f"dead letters: 0 in table {sandbox.table}deadletters" in out
    assert "checkpoint: windows done to" in out

    sandbox.sim.configure(auth_status=401)
    with pytest.raises(RunFailed):
        run(sandbox)
    assert cli.main(["status", "--settings", str(settings), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["instance"] == "default"
    assert data["health"]["last_outcome"] == "failed"
    assert data["health"]["consecutive_failures"] == 1
    assert data["health"]["last_error_class"] == "SourceAuthError"
    assert data["health"]["lag_now_seconds"] is None or data["health"]["lag_now_seconds"] >= 0
    assert data["checkpoint"]["done_to"]
    assert (data["dead_letters"], data["dead_letters_capped"]) == (0, False)

    # Set-aside records are counted, as a number for scripts (their content is never shown).
    store = composition.build_store(load_settings(sandbox.environ()), sandbox.environ())
    try:
        window = Window(1_700_000_000, 1_700_000_600)
        store.set_aside([SetAsideRecord(f"id-{n}", "refused", window, b'{"secret":"x"}') for n in range(3)])
    finally:
        store.close()
    assert cli.main(["status", "--settings", str(settings), "--json"]) == 1
    out = capsys.readouterr().out
    assert (json.loads(out)["dead_letters"], json.loads(out)["dead_letters_capped"]) == (3, False)
    assert "secret" not in out
    assert cli.main(["status", "--settings", str(settings)]) == 1
    assert f"dead letters: 3 in table {sandbox.table}deadletters" in capsys.readouterr().out

    bad = tmp_path / "bad.settings.json"
    bad.write_text(json.dumps({"Values": sandbox.environ() | {"DCR_IMMUTABLE_ID": "nope"}}))
    assert cli.main(["status", "--settings", str(bad)]) == 2


def test_status_names_a_damaged_checkpoint_row_and_property(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from azure.data.tables import TableClient, UpdateMode

    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": sandbox.environ()}))
    run(sandbox, 0)
    with TableClient.from_connection_string(sandbox.azurite.connection_string, sandbox.table) as client:
        client.update_entity(
            {"PartitionKey": "checkpoint", "RowKey": "default", "Floor": "yesterday"}, mode=UpdateMode.MERGE
        )
    row = f"{sandbox.table}/checkpoint/default"

    assert cli.main(["status", "--settings", str(settings)]) == 0, "the last run itself was fine"
    lines = capsys.readouterr().out.splitlines()
    [line] = [x for x in lines if x.startswith("checkpoint: ")]
    assert line.startswith(
        f"checkpoint: CheckpointDamaged: the row '{row}' is damaged: property Floor: a str, not an integer"
    )
    assert "Azure Storage Explorer" in line, "with what to do"

    assert cli.main(["status", "--settings", str(settings), "--json"]) == 0
    damaged = json.loads(capsys.readouterr().out)["checkpoint"]["damaged"]
    assert damaged == line.removeprefix("checkpoint: ")


# -- one line per run ------------------------------------------------------------------------------


def test_timer_tick_logs_one_info_summary_or_one_error_and_raises(
    sandbox: Sandbox,
    event_factory: EventFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in sandbox.environ().items():
        monkeypatch.setenv(name, value)
    now = int(sandbox.clock.now())
    sandbox.sim.add(event_factory.background(now - 1800, now - 120, per_minute=1))
    sandbox.sim.fail_next("503")  # one retry, logged at WARNING

    caplog.set_level(logging.INFO, logger="nordpass_connector")
    composition.run_timer_tick()
    ours = [r for r in caplog.records if r.name == "nordpass_connector"]
    assert [r.levelno for r in ours] == [logging.INFO]
    line = ours[0].getMessage()
    assert line.startswith("nordpass run: {")
    summary = json.loads(line.split(": ", 1)[1])
    assert summary["outcome"] == "ok"
    assert summary["window"]["to"] and summary["pages"] >= 1
    assert summary["retries"] == {"nordpass:5xx": 1}
    assert summary["lag_seconds"] is not None and "duration_seconds" in summary
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert retries and all(r.levelno == logging.WARNING for r in retries)

    caplog.clear()
    sandbox.sim.configure(auth_status=401)
    # A fresh table, so this run surely queries NordPass (a tick right after the last may have
    # nothing to read yet on the real clock).
    monkeypatch.setenv("CHECKPOINT_TABLE_NAME", sandbox.table + "b")
    with pytest.raises(RunFailed):
        composition.run_timer_tick()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert message.startswith("nordpass run failed: SourceAuthError: ")
    assert SourceAuthError.action in message
    assert '"outcome":"failed"' in message
    assert not [r for r in caplog.records if r.name == "nordpass_connector" and r.levelno == logging.INFO]


def test_an_unreadable_record_is_left_alone_not_rebuilt(sandbox: Sandbox) -> None:
    sandbox.sim.configure(auth_status=401)
    with pytest.raises(RunFailed):
        run(sandbox, 0)
    assert read_health(sandbox).consecutive_failures == 1
    env = sandbox.environ()
    stored = composition.build_store(load_settings(env), env).read_health()
    unreadable = MemoryHealthStore(
        stored, read_error=CheckpointUnavailable("checkpoint health read failed: ServiceResponseError")
    )

    sandbox.sim.configure(auth_status=None)
    assert run(sandbox, health_store=unreadable).outcome == "ok"
    assert unreadable.reads == 1
    assert unreadable.writes == [], "no record rebuilt from nothing over the real one"
    assert unreadable.fields == stored


def test_set_aside_reason_codes_are_the_ones_the_table_describes() -> None:
    # The column description is what an analyst reads in Log Analytics; it lists every code.
    from nordpass_connector.ports import SetAsideCode
    from nordpass_connector.schema import HEALTH_COLUMNS

    described = next(c.description for c in HEALTH_COLUMNS if c.name == "SetAsideReasons")
    assert described.endswith("(" + ", ".join(code.value for code in SetAsideCode) + ")")
