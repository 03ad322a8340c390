"""No secret and no event content in anything a person or a log pipeline can see.

Every scenario runs with EVERY logger at DEBUG (root, azure.*, httpx, httpcore, urllib3, msal), and
the haystack is: all captured log records with their tracebacks, stdout/stderr of the commands (also
as subprocesses at --log-level DEBUG), run reports and summaries, health records, the health rows
sent to Sentinel, doctor and status output, and exception text (str, repr, describe, formatted
traceback). The needles: the NordPass token (good and bad), the bearer token and identity header of
the token endpoint, the Azurite account key, and markers planted only inside event content.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.identity import ManagedIdentityCredential

from nordpass_connector import cli, composition
from nordpass_connector.adapters.ingestion import build_logs_client
from nordpass_connector.doctor import render, run_doctor
from nordpass_connector.health import run_summary
from nordpass_connector.pipeline import RunFailed
from nordpass_connector.report import RunReport
from nordpass_connector.settings import load_settings
from sandbox.datagen import EventFactory
from sandbox.token_endpoint import TokenEndpoint
from tests.harness import FAST_RETRIES, Sandbox

REPO = Path(__file__).resolve().parents[1]
EVENT_MARKER = "SECRET-EVENT-CONTENT-4242"
EVENT_EMAIL = "only-in-events-4242@leak-canary.test"
WRONG_TOKEN = "np-wrong-token-9d1e5c7a3b"
DEBUG_LOGGERS = (
    "",
    "azure",
    "azure.core",
    "azure.core.pipeline.policies._universal",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
    "azure.monitor.ingestion",
    "azure.data.tables",
    "httpx",
    "httpcore",
    "urllib3",
    "msal",
    "nordpass_connector",
)


class Haystack:
    def __init__(self, needles: dict[str, str]) -> None:
        assert all(len(v) >= 8 for v in needles.values()), needles.keys()
        self.needles = needles
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def add_error(self, where: str, error: BaseException) -> None:
        self.add(where + " str", str(error))
        self.add(where + " repr", repr(error))
        self.add(where + " traceback", "".join(traceback.format_exception(error)))
        describe = getattr(error, "describe", None)
        if callable(describe):
            self.add(where + " describe", str(describe()))

    def add_report(self, where: str, report: RunReport) -> None:
        self.add(where + " report", report.to_json())
        self.add(where + " summary", json.dumps(run_summary(report)))

    def assert_clean(self) -> None:
        assert self.texts, "nothing was captured"
        found = [
            f"{name} in {where}"
            for where, text in self.texts
            for name, needle in self.needles.items()
            if needle in text
        ]
        assert not found, found


@pytest.fixture
def debug_everything() -> Iterator[Callable[[], None]]:
    saved = {name: logging.getLogger(name).level for name in DEBUG_LOGGERS}

    def set_all() -> None:
        for name in DEBUG_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)

    set_all()
    yield set_all
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def hay(sandbox: Sandbox, token_endpoint: TokenEndpoint) -> Haystack:
    cs = sandbox.azurite.connection_string
    key = next(p.split("=", 1)[1] for p in cs.split(";") if p.startswith("AccountKey="))
    return Haystack(
        {
            "NordPass token": sandbox.token,
            "wrong NordPass token": WRONG_TOKEN,
            "bearer token": token_endpoint.access_token,
            "identity header": token_endpoint.identity_header,
            "storage account key": key,
            "event marker": EVENT_MARKER,
            "event-only email": EVENT_EMAIL,
        }
    )


def plant_events(sb: Sandbox, f: EventFactory) -> None:
    now = int(sb.clock.now())
    events = f.background(now - 3600, now - 120, per_minute=1)
    for e in events[::3]:
        e["metadata"]["note"] = EVENT_MARKER
        e["user"]["email"] = EVENT_EMAIL
    sb.sim.add(events)
    # Malformed: set aside (and logged) by id and reason, never by content.
    sb.sim.add(
        [{"timestamp": "soon", "metadata": {"note": EVENT_MARKER}, "user": {"email": EVENT_EMAIL}}],
        at=now - 1000,
    )
    sb.sim.add([f"{EVENT_MARKER} {EVENT_EMAIL}"], at=now - 900)


def run(sb: Sandbox, hay: Haystack, where: str, *, advance: float = 60, **overrides: str) -> RunReport:
    sb.clock.advance(advance)
    env = dict(os.environ) | sb.environ() | overrides
    try:
        report = composition.run_from_environment(env, clock=sb.clock, retry_policy=FAST_RETRIES)
    except RunFailed as failure:
        hay.add_report(where, failure.report)
        hay.add_error(where, failure)
        hay.add_error(where + " cause", failure.cause)
        return failure.report
    hay.add_report(where, report)
    return report


def health_text(sb: Sandbox) -> str:
    env = sb.environ()
    return json.dumps(composition.build_store(load_settings(env), env).read_health())


def test_runs_success_and_every_failure_kind_leak_nothing(
    sandbox: Sandbox,
    event_factory: EventFactory,
    hay: Haystack,
    caplog: pytest.LogCaptureFixture,
    debug_everything: Callable[[], None],
) -> None:
    sb = sandbox
    caplog.set_level(logging.DEBUG)
    plant_events(sb, event_factory)

    first = run(sb, hay, "success + malformed", advance=0)
    assert (first.outcome, first.set_aside_reasons) == ("ok", {"malformed": 2})
    assert first.sent > 0

    debug_everything()
    assert run(sb, hay, "bad token", NORDPASS_TOKEN=WRONG_TOKEN).error_class == "SourceAuthError"
    debug_everything()
    sb.sim.configure(auth_status=401)
    assert run(sb, hay, "token revoked").error_class == "SourceAuthError"
    sb.sim.configure(auth_status=None)

    t = int(sb.clock.now())
    more = event_factory.background(t - 60, t + 50, per_minute=4)
    for e in more:
        e["metadata"]["note"] = EVENT_MARKER
    sb.sim.add(more)
    debug_everything()
    sb.ingestion.forbid()
    assert run(sb, hay, "403").error_class == "SinkAuthError"
    sb.ingestion.clear_faults()

    debug_everything()
    sb.sim.fail_next("500", "502", "garbage")
    sb.ingestion.fail(503, times=2)
    sb.ingestion.fail(429, times=1, retry_after="0")
    retried = run(sb, hay, "5xx with retries")
    assert retried.outcome == "ok", retried.error
    assert {"nordpass:5xx", "nordpass:protocol", "ingestion:5xx", "ingestion:429"} <= set(retried.retries)

    t = int(sb.clock.now())
    rejected = event_factory.background(t - 60, t + 50, per_minute=2)
    for e in rejected:
        e["metadata"]["note"] = EVENT_MARKER
    sb.sim.add(rejected)
    debug_everything()
    sb.ingestion.fail(400, times=1)
    rejected_run = run(sb, hay, "400 rejected batch")
    assert rejected_run.outcome == "ok" and rejected_run.set_aside > 0, rejected_run.set_aside_reasons

    hay.add("health record", health_text(sb))
    # The health rows in Sentinel: one per run (the 403 run's row was refused like its events).
    rows = sb.ingestion.health_rows()
    assert [r["Outcome"] for r in rows] == ["ok", "failed", "failed", "ok", "ok"]
    assert rows[1]["ErrorMessage"] and rows[0]["SetAsideReasons"] == {"malformed": 2}
    hay.add("health rows", json.dumps(rows, default=str))
    hay.add("log", caplog.text)
    for record in caplog.records:
        hay.add(f"log record {record.name}", record.getMessage())
    assert {r.name.split(".")[0] for r in caplog.records} >= {"nordpass_connector"}
    hay.assert_clean()


def test_doctor_and_status_leak_nothing(
    sandbox: Sandbox,
    hay: Haystack,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    debug_everything: Callable[[], None],
) -> None:
    sb = sandbox
    caplog.set_level(logging.DEBUG)
    env = dict(os.environ) | sb.environ()
    hay.add("doctor healthy", "\n".join(render(run_doctor(env, timeout=5))))
    debug_everything()
    sb.ingestion.forbid()
    hay.add("doctor broken", "\n".join(render(run_doctor(env | {"NORDPASS_TOKEN": WRONG_TOKEN}, timeout=5))))
    sb.ingestion.clear_faults()
    debug_everything()
    kv = "@Microsoft.KeyVault(VaultName=kv;SecretName=" + WRONG_TOKEN + ")"
    hay.add("doctor key vault", "\n".join(render(run_doctor(env | {"NORDPASS_TOKEN": kv}, timeout=5))))

    sb.sim.configure(auth_status=401)
    run(sb, hay, "failed run before status", advance=0)
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": sb.environ()}))
    for args in (["status"], ["status", "--json"]):
        debug_everything()
        cli.main(["--log-level", "DEBUG", *args, "--settings", str(settings)])
        captured = capsys.readouterr()
        hay.add(" ".join(args) + " stdout", captured.out)
        hay.add(" ".join(args) + " stderr", captured.err)
        assert "SourceAuthError" in captured.out
    hay.add("log", caplog.text)
    hay.assert_clean()


def test_timer_tick_error_line_leaks_nothing(
    sandbox: Sandbox,
    event_factory: EventFactory,
    hay: Haystack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in (sandbox.environ() | {"NORDPASS_TOKEN": WRONG_TOKEN}).items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RunFailed) as failed:
        composition.run_timer_tick()
    hay.add_error("timer tick", failed.value)
    hay.add("log", caplog.text)
    assert "nordpass run failed: SourceAuthError" in caplog.text
    hay.assert_clean()


def _cli(sb: Sandbox, tmp_path: Path, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": sb.environ() | overrides}))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "nordpass_connector",
            "--log-level",
            "DEBUG",
            *args,
            "--settings",
            str(settings),
        ],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_commands_as_processes_at_debug_leak_nothing(
    sandbox: Sandbox, event_factory: EventFactory, hay: Haystack, tmp_path: Path
) -> None:
    sb = sandbox
    plant_events(sb, event_factory)
    # The failing run gets a table of its own: on the real clock a run in the same second as the
    # last one may have nothing to read yet, and so never present the bad token.
    fresh = sb.table + "b"
    results: dict[str, subprocess.CompletedProcess[str]] = {
        "run ok": _cli(sb, tmp_path, "run", "--once"),
        "run bad token": _cli(
            sb, tmp_path, "run", "--once", NORDPASS_TOKEN=WRONG_TOKEN, CHECKPOINT_TABLE_NAME=fresh
        ),
        "doctor bad token": _cli(sb, tmp_path, "doctor", NORDPASS_TOKEN=WRONG_TOKEN),
        "status": _cli(sb, tmp_path, "status", "--json", CHECKPOINT_TABLE_NAME=fresh),
    }
    assert [r.returncode for r in results.values()] == [0, 1, 1, 1]
    assert json.loads(results["run ok"].stdout)["set_aside_reasons"] == {"malformed": 2}
    assert " DEBUG nordpass_connector" in results["doctor bad token"].stderr, "really ran at DEBUG"
    for where, result in results.items():
        hay.add(where + " stdout", result.stdout)
        hay.add(where + " stderr", result.stderr)
    hay.assert_clean()


def test_the_scan_sees_a_real_leak_and_the_logger_pin_stops_it(
    sandbox: Sandbox,
    hay: Haystack,
    token_endpoint: TokenEndpoint,
    caplog: pytest.LogCaptureFixture,
    debug_everything: Callable[[], None],
) -> None:
    """`logging_enable=True` makes azure-core's NetworkTraceLoggingPolicy print every header at
    DEBUG, the bearer token included. The scan must catch that (else the tests above prove
    nothing), and `quiet_third_party_loggers` must silence it."""
    caplog.set_level(logging.DEBUG)

    def upload_with_network_trace() -> None:
        client = build_logs_client(sandbox.ingestion.endpoint, ManagedIdentityCredential())
        with client:
            client.upload(
                sandbox.ingestion.dcr_immutable_id,
                sandbox.ingestion.stream_name,
                io.BytesIO(b"[]"),
                logging_enable=True,
            )

    upload_with_network_trace()
    assert token_endpoint.access_token in caplog.text
    leaked = Haystack(hay.needles)
    leaked.add("log", caplog.text)
    with pytest.raises(AssertionError, match="bearer token in log"):
        leaked.assert_clean()

    caplog.clear()
    debug_everything()
    composition.quiet_third_party_loggers()
    upload_with_network_trace()
    hay.add("log", caplog.text)
    hay.assert_clean()
