"""The Functions adapter and the command line run the same code path, on the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from sandbox.datagen import EventFactory
from tests.harness import Sandbox, deliverable, expected_ids

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def timer_function() -> Any:
    import function_app

    # get_functions() may be called once per process (a second call raises in azure-functions 1.x).
    functions = function_app.app.get_functions()
    assert len(functions) == 1
    return functions[0]


def test_one_timer_every_minute_not_on_startup_with_monitor(timer_function: Any) -> None:
    trigger = timer_function.get_trigger().get_dict_repr()
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "0 */1 * * * *"
    assert trigger["runOnStartup"] is False
    assert trigger["useMonitor"] is True
    assert trigger["name"] == "timer"
    bindings = json.loads(timer_function.get_function_json())["bindings"]
    assert [b["type"] for b in bindings] == ["timerTrigger"]


def test_importing_the_app_reads_no_settings_and_touches_no_network() -> None:
    code = "import function_app, sys; print(len(function_app.app.get_functions()))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_host_json_has_timeout_bundle_and_keeps_failures_unsampled() -> None:
    host = json.loads((REPO / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["functionTimeout"] == "00:05:00"
    assert host["extensionBundle"]["version"].startswith("[4.")
    excluded = host["logging"]["applicationInsights"]["samplingSettings"]["excludedTypes"].split(";")
    assert {"Request", "Exception"} <= set(excluded)


def test_host_json_sends_the_run_line_and_failures_not_per_invocation_chatter(timer_function: Any) -> None:
    """Application Insights gets our one line a tick (category Function.<name>.User) and every
    warning or failure, but not the host's Executing/Executed traces (Function.<name>) or its
    aggregated metrics (Host.Aggregator); the request record of each invocation (Host.Results) stays,
    so the portal still lists invocations."""
    from bench.cost import HOST_LEVELS, host_level_for

    levels = json.loads((REPO / "host.json").read_text())["logging"]["logLevel"]
    name = timer_function.get_function_name()
    assert host_level_for(f"Function.{name}.User", levels) == HOST_LEVELS["Information"]
    assert host_level_for(f"Function.{name}", levels) == HOST_LEVELS["Warning"]
    assert host_level_for("Host.Aggregator", levels) == HOST_LEVELS["Warning"]
    assert host_level_for("Host.Results", levels) == HOST_LEVELS["Information"]


def test_timer_function_delivers_and_a_failed_run_fails_the_invocation(
    timer_function: Any,
    sandbox: Sandbox,
    event_factory: EventFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - 86_400, now - 120, per_minute=1)
    sb.sim.add(source)
    for name, value in sb.environ().items():
        monkeypatch.setenv(name, value)
    handler = timer_function.get_user_function()

    handler(TimerRequest(past_due=True))
    delivered = sb.delivered()
    assert set(delivered) == set(expected_ids(deliverable(source)))
    assert max(delivered.values()) == 1

    # A fresh checkpoint table: a first run always queries NordPass, even within the same second.
    sb.sim.configure(auth_status=401)
    monkeypatch.setenv("CHECKPOINT_TABLE_NAME", sb.table + "x")
    with pytest.raises(Exception, match="rejected the NordPass token"):
        handler(TimerRequest(past_due=False))
    assert isinstance(TimerRequest(past_due=False), func.TimerRequest)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nordpass_connector", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_once_prints_one_json_report_and_uses_exit_codes(
    sandbox: Sandbox, event_factory: EventFactory, tmp_path: Path
) -> None:
    sb, f = sandbox, event_factory
    now = int(sb.clock.now())
    source = f.background(now - 6 * 3600, now - 120, per_minute=2)
    sb.sim.add(source)
    sb.sim.now = lambda: now  # the subprocess plans windows on the real clock
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": sb.environ()}))

    ok = _cli(["run", "--once", "--settings", str(settings)], env)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["outcome"] == "ok"
    assert report["sent"] == len(source)
    for key in (
        "windows",
        "pages",
        "fetched",
        "deduplicated",
        "set_aside",
        "retries",
        "checkpoint_before",
        "checkpoint_after",
        "lag_seconds",
    ):
        assert key in report
    assert set(sb.delivered()) == set(expected_ids(source))

    # A fresh checkpoint table, so the run queries NordPass even within the same second.
    sb.sim.configure(auth_status=403)
    fresh = {**sb.environ(), "CHECKPOINT_TABLE_NAME": sb.table + "x"}
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": fresh}))
    failed = _cli(["run", "--once", "--settings", str(settings)], env)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error_class"] == "SourceAuthError"
    assert "update NORDPASS_TOKEN" in failed.stderr
    assert sb.token not in failed.stdout + failed.stderr

    broken = {**sb.environ(), "NORDPASS_TOKEN": "@Microsoft.KeyVault(VaultName=kv;SecretName=np)"}
    settings.write_text(json.dumps({"Values": broken}))
    config = _cli(["run", "--once", "--settings", str(settings)], env)
    assert config.returncode == 2
    assert "NORDPASS_TOKEN" in config.stdout
    assert "Key Vault" in config.stdout
