"""`doctor` against the sandbox: every check passing, and each one failing the way a real deployment
breaks, with the verdict and the fix a person would read."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nordpass_connector import doctor
from nordpass_connector.adapters.emulator import START_AZURITE
from nordpass_connector.adapters.ingestion import HEALTH_STREAM_ACTION
from nordpass_connector.doctor import FAIL, PASS, SKIP, Check, run_doctor
from nordpass_connector.errors import (
    ConfigurationError,
    SinkAuthError,
    SinkConfigError,
    SourceAuthError,
)
from sandbox.token_endpoint import TokenEndpoint
from tests.harness import Sandbox

REPO = Path(__file__).resolve().parents[1]
ORDER = ["settings", "nordpass", "identity", "dcr", "checkpoint table", "clock"]


class OffsetClock:
    """The real clock, shifted: a machine whose time is wrong."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        import time

        return time.time() + self.offset

    def monotonic(self) -> float:
        import time

        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        import time

        time.sleep(seconds)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environ(sb: Sandbox, **overrides: str) -> dict[str, str]:
    # The identity variables live in the process environment (the fixture sets them), as on Azure.
    return dict(os.environ) | sb.environ() | overrides


def verdicts(checks: list[Check]) -> dict[str, str]:
    return {c.name: c.verdict for c in checks}


def by_name(checks: list[Check], name: str) -> Check:
    return next(c for c in checks if c.name == name)


def test_healthy_setup_passes_every_check(sandbox: Sandbox) -> None:
    checks = run_doctor(environ(sandbox), timeout=5)
    assert [c.name for c in checks] == ORDER
    assert verdicts(checks) == dict.fromkeys(ORDER, PASS), doctor.render(checks)
    text = doctor.render(checks)
    assert text[-1] == "doctor: 6 passed, 0 failed, 0 skipped"
    assert "fix:" not in "\n".join(text)
    assert "NordPass" in by_name(checks, "clock").detail
    assert "Logs Ingestion API" in by_name(checks, "clock").detail
    dcr = by_name(checks, "dcr").detail
    assert f"so did health stream {sandbox.ingestion.health_stream_name} (client_request_id=" in dcr
    streams = [c.stream for c in sandbox.ingestion.calls]
    assert streams == [sandbox.ingestion.stream_name, sandbox.ingestion.health_stream_name]


def test_doctor_probe_leaves_no_rows_behind(sandbox: Sandbox, azurite_server: object) -> None:
    from azure.data.tables import TableClient

    assert all(c.passed for c in run_doctor(environ(sandbox), timeout=5))
    with TableClient.from_connection_string(sandbox.azurite.connection_string, sandbox.table) as client:
        assert list(client.list_entities()) == [], "doctor must not leave a probe or touch the checkpoint"


def test_bad_nordpass_token_fails_with_the_token_fix(sandbox: Sandbox) -> None:
    checks = run_doctor(environ(sandbox, NORDPASS_TOKEN="np-wrong-token-0000"), timeout=5)
    check = by_name(checks, "nordpass")
    assert check.verdict == FAIL
    assert "rejected the NordPass token (HTTP 401)" in check.detail
    assert check.fix == SourceAuthError.action
    assert f"fix: {SourceAuthError.action}" in "\n".join(doctor.render(checks))
    # Only that piece is broken: the rest still passes, the clock is judged from both answers.
    assert verdicts(checks) == dict.fromkeys(ORDER, PASS) | {"nordpass": FAIL}


def test_revoked_token_403_is_the_same_fix(sandbox: Sandbox) -> None:
    sandbox.sim.configure(auth_status=403)
    check = by_name(run_doctor(environ(sandbox), timeout=5), "nordpass")
    assert (check.verdict, check.fix) == (FAIL, SourceAuthError.action)
    assert "HTTP 403" in check.detail


def test_unreachable_nordpass_fails_with_the_endpoint_fix(sandbox: Sandbox) -> None:
    url = f"http://127.0.0.1:{closed_port()}/activities/query"
    checks = run_doctor(environ(sandbox, NORDPASS_ENDPOINT_URL=url), timeout=2)
    check = by_name(checks, "nordpass")
    assert check.verdict == FAIL
    assert check.fix == doctor.FIX_NORDPASS_UNREACHABLE
    assert check.detail.endswith(": connection refused (3 attempts; it has not answered in this run)")


def test_unresolved_key_vault_reference_fails_settings_and_skips_the_rest(sandbox: Sandbox) -> None:
    ref = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/nordpass-token)"
    checks = run_doctor(environ(sandbox, NORDPASS_TOKEN=ref, DCR_IMMUTABLE_ID="dcr-123"), timeout=5)
    settings = by_name(checks, "settings")
    assert settings.verdict == FAIL
    assert settings.fix == ConfigurationError.action
    assert len(settings.lines) == 2, "one line per problem"
    assert any("NORDPASS_TOKEN still holds an unresolved Key Vault reference" in p for p in settings.lines)
    assert any(p.startswith("DCR_IMMUTABLE_ID must look like") for p in settings.lines)
    assert verdicts(checks) == {"settings": FAIL} | dict.fromkeys(ORDER[1:], SKIP)
    assert by_name(checks, "nordpass").detail == "skipped: the settings check did not pass"
    rendered = "\n".join(doctor.render(checks))
    assert "- NORDPASS_TOKEN still holds" in rendered
    assert "vault.azure.net" not in rendered, "the reference itself is not echoed"


def test_missing_role_fails_the_dcr_check_with_the_role_and_propagation_fix(sandbox: Sandbox) -> None:
    sandbox.ingestion.forbid()
    checks = run_doctor(environ(sandbox), timeout=5)
    check = by_name(checks, "dcr")
    assert check.verdict == FAIL
    assert "403" in check.detail
    assert check.fix == SinkAuthError.action
    assert "Monitoring Metrics Publisher" in check.fix
    assert "30 minutes" in check.fix
    assert verdicts(checks)["clock"] == PASS, "a 403 still carries a Date header"


def test_wrong_dcr_id_fails_with_the_dcr_fix(sandbox: Sandbox) -> None:
    checks = run_doctor(environ(sandbox, DCR_IMMUTABLE_ID="dcr-" + "5e1f" * 8), timeout=5)
    check = by_name(checks, "dcr")
    assert check.verdict == FAIL
    assert "404" in check.detail and "dcr-" + "5e1f" * 8 in check.detail
    assert check.fix == SinkConfigError.action


def test_wrong_stream_fails_with_the_dcr_fix(sandbox: Sandbox) -> None:
    check = by_name(run_doctor(environ(sandbox, DCR_STREAM_NAME="Custom-Other_CL"), timeout=5), "dcr")
    assert (check.verdict, check.fix) == (FAIL, SinkConfigError.action)


def test_a_dcr_without_the_health_stream_fails_with_the_redeploy_fix(sandbox: Sandbox) -> None:
    stream = sandbox.ingestion.health_stream_name
    assert stream is not None
    sandbox.ingestion.declare_health_stream(None)  # a DCR deployed before the health table
    try:
        checks = run_doctor(environ(sandbox), timeout=5)
    finally:
        sandbox.ingestion.declare_health_stream(stream)
    check = by_name(checks, "dcr")
    assert check.verdict == FAIL
    assert "404" in check.detail and stream in check.detail
    assert check.fix == HEALTH_STREAM_ACTION
    assert "DCR_HEALTH_STREAM_NAME=none" in check.fix
    assert verdicts(checks) == dict.fromkeys(ORDER, PASS) | {"dcr": FAIL}


def test_health_rows_turned_off_checks_the_events_stream_only_and_says_so(sandbox: Sandbox) -> None:
    checks = run_doctor(environ(sandbox, DCR_HEALTH_STREAM_NAME="none"), timeout=5)
    check = by_name(checks, "dcr")
    assert check.verdict == PASS
    assert check.detail.endswith("; no health stream (DCR_HEALTH_STREAM_NAME=none)")
    streams = [c.stream for c in sandbox.ingestion.calls]
    assert streams == [sandbox.ingestion.stream_name]


def test_token_endpoint_failure_fails_identity_and_skips_the_dcr(
    sandbox: Sandbox, token_endpoint: TokenEndpoint
) -> None:
    token_endpoint.set_failure("error500")
    checks = run_doctor(environ(sandbox), timeout=5)
    identity = by_name(checks, "identity")
    assert identity.verdict == FAIL
    assert "could not get a token for https://monitor.azure.com" in identity.detail
    assert identity.fix == doctor.FIX_IDENTITY
    dcr = by_name(checks, "dcr")
    assert dcr.verdict == SKIP
    assert dcr.detail == "skipped: the identity check did not pass"
    # NordPass still answered, so the clock is still judged.
    assert verdicts(checks) | {"identity": PASS, "dcr": PASS} == dict.fromkeys(ORDER, PASS)


def test_unreachable_table_fails_with_the_storage_fix(sandbox: Sandbox) -> None:
    broken = sandbox.azurite.connection_string.replace(
        f"http://127.0.0.1:{sandbox.azurite.ports['table']}", "http://storage.nowhere.invalid"
    )
    assert broken != sandbox.azurite.connection_string
    checks = run_doctor(environ(sandbox, AzureWebJobsStorage=broken), timeout=3)
    check = by_name(checks, "checkpoint table")
    assert check.verdict == FAIL
    assert check.detail.startswith("checkpoint table write failed: ServiceRequestError")
    assert check.fix == doctor.FIX_TABLE_UNREACHABLE


def test_a_stopped_local_emulator_fails_with_the_start_azurite_fix(sandbox: Sandbox) -> None:
    port = closed_port()
    broken = sandbox.azurite.connection_string.replace(
        f"127.0.0.1:{sandbox.azurite.ports['table']}", f"127.0.0.1:{port}"
    )
    check = by_name(run_doctor(environ(sandbox, AzureWebJobsStorage=broken), timeout=3), "checkpoint table")
    assert check.verdict == FAIL
    assert check.detail == (
        f"nothing answers at 127.0.0.1:{port}, the local storage emulator AzureWebJobsStorage points at"
    )
    assert check.fix == START_AZURITE


def test_wrong_storage_key_fails_with_the_credential_fix(sandbox: Sandbox) -> None:
    cs = sandbox.azurite.connection_string
    key = next(p.split("=", 1)[1] for p in cs.split(";") if p.startswith("AccountKey="))
    wrong = cs.replace(key, "A" * (len(key) - 2) + "==")
    check = by_name(run_doctor(environ(sandbox, AzureWebJobsStorage=wrong), timeout=3), "checkpoint table")
    assert check.verdict == FAIL
    assert "HTTP 403" in check.detail
    assert check.fix == doctor.FIX_TABLE_CREDENTIAL


def test_clock_skew_fails_with_the_time_sync_fix(sandbox: Sandbox) -> None:
    checks = run_doctor(environ(sandbox), clock=OffsetClock(300), timeout=5)
    check = by_name(checks, "clock")
    assert check.verdict == FAIL
    assert "ahead of" in check.detail
    assert check.fix == doctor.FIX_CLOCK
    behind = by_name(run_doctor(environ(sandbox), clock=OffsetClock(-300), timeout=5), "clock")
    assert behind.verdict == FAIL and "behind" in behind.detail


def test_clock_is_skipped_when_nothing_answered(sandbox: Sandbox, token_endpoint: TokenEndpoint) -> None:
    token_endpoint.set_failure("expires_in_only")  # a token answer azure-identity refuses
    url = f"http://127.0.0.1:{closed_port()}/activities/query"
    checks = run_doctor(environ(sandbox, NORDPASS_ENDPOINT_URL=url), timeout=2)
    assert by_name(checks, "identity").verdict == FAIL
    assert by_name(checks, "clock").verdict == SKIP
    # Both were asked (the settings passed), neither answered: that is what the line says.
    assert by_name(checks, "clock").detail == (
        "skipped: neither NordPass nor the Logs Ingestion API answered with a Date header"
    )


# -- as a process: exit codes and output ---------------------------------------------------------


def run_cli(sb: Sandbox, tmp_path: Path, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": sb.environ() | overrides}))
    env = dict(os.environ)  # carries IDENTITY_ENDPOINT / IDENTITY_HEADER and REQUESTS_CA_BUNDLE
    assert env.get("IDENTITY_ENDPOINT") and env.get("REQUESTS_CA_BUNDLE")
    return subprocess.run(
        [sys.executable, "-m", "nordpass_connector", *args, "--settings", str(settings)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_doctor_as_a_process_exit_codes(sandbox: Sandbox, tmp_path: Path) -> None:
    ok = run_cli(sandbox, tmp_path, "doctor")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1] == "doctor: 6 passed, 0 failed, 0 skipped"
    assert all(line.startswith("PASS") for line in ok.stdout.splitlines()[:-1])

    broken = run_cli(sandbox, tmp_path, "doctor", DCR_IMMUTABLE_ID="dcr-" + "5e1f" * 8)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "FAIL  dcr" in broken.stdout
    assert f"fix: {SinkConfigError.action}" in broken.stdout

    config = run_cli(sandbox, tmp_path, "doctor", NORDPASS_TOKEN="")
    assert config.returncode == 2
    assert "- NORDPASS_TOKEN is missing" in config.stdout
