"""The operator's first hour: each mistake, made through the real command in a subprocess, gets one
actionable line and the documented exit code, with no traceback and no secret in the output.

`python -m nordpass_connector ...` runs exactly as a person types it, with `--settings` pointing at a
file written here. Where a service is needed, the sandbox stand-ins serve it (the `sandbox` fixture).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nordpass_connector.adapters.emulator import DEVELOPMENT_TABLE_ADDRESS, START_AZURITE, listens
from nordpass_connector.adapters.table_store import UNREACHABLE_ACTION
from nordpass_connector.doctor import FIX_IDENTITY_LOCALLY, FIX_NORDPASS_UNREACHABLE
from nordpass_connector.errors import ConfigurationError, SettingsFileError, SinkTokenUnavailable
from sandbox.azurite import free_port
from sandbox.datagen import EventFactory
from tests.harness import Sandbox, deliverable

REPO = Path(__file__).resolve().parents[1]
SECRET_TOKEN = "np-secret-token-7c41d9e2a8"
# The logging prefix of the command line's stderr lines.
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>[\w.]+): ")
# Variables through which azure-identity could find an identity on a developer's machine or a CI
# runner; the commands run without them unless a test sets them.
IDENTITY_VARIABLES = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_CLIENT_CERTIFICATE_PATH",
)


@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def assert_clean(self, *secrets: str) -> None:
        """No traceback and none of `secrets` in anything the command printed."""
        for stream, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            assert "Traceback" not in text, f"{self.args}: traceback on {stream}:\n{text}"
            for secret in secrets:
                assert secret not in text, f"{self.args}: a secret on {stream}"

    def error_line(self) -> str:
        """The one line on stderr, without the logging prefix (time, level, logger)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"{self.args}: expected one line on stderr, got:\n{self.stderr}"
        match = LOG_PREFIX.match(lines[0])
        assert match and match["level"] == "ERROR", lines[0]
        return lines[0][match.end() :]


def clean_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without any identity source (no managed identity, no
    service principal, an empty Azure CLI profile: like a laptop without `az login`)."""
    env = {k: v for k, v in os.environ.items() if k not in IDENTITY_VARIABLES}
    profile = tmp_path / "azure-cli-profile"
    profile.mkdir(exist_ok=True)
    env["AZURE_CONFIG_DIR"] = str(profile)
    env.update(extra)
    return env


def connector(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = 120,
    module: str = "nordpass_connector",
) -> Result:
    """`python -m <module> <args>` as a person types it (`module` may be `sandbox.demo`)."""
    env = dict(os.environ if env is None else env)
    # Importable from any working directory, as after `pip install`.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(tuple(args), done.returncode, done.stdout, done.stderr)


def write_settings(path: Path, values: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": dict(values)}, indent=2), encoding="utf-8")
    return path


# -- 1. the settings file itself -------------------------------------------------------------------

BROKEN_FILES: dict[str, tuple[str, str]] = {
    # name: (file content, the problem as the line states it; {path} is the file)
    "not JSON": (
        '{"Values": {"NORDPASS_TOKEN": "' + SECRET_TOKEN + '",}}',
        "settings file {path} is not valid JSON (Expecting property name enclosed in double quotes at "
        "line 1 column 60)",
    ),
    "cut short": (
        '{"Values": ',
        "settings file {path} is not valid JSON (Expecting value at line 1 column 12)",
    ),
    "a list": ("[1, 2]", 'settings file {path} holds a JSON array, not an object with a "Values" object'),
    "no Values": (
        json.dumps({"NORDPASS_TOKEN": SECRET_TOKEN}),
        'settings file {path} has no "Values" object: the settings go inside "Values", as in '
        "local.settings.json.example",
    ),
    "Values a list": (
        json.dumps({"Values": [SECRET_TOKEN]}),
        '"Values" in settings file {path} is a JSON array, not an object of setting names and values',
    ),
    "nested values": (
        json.dumps({"Values": {"NORDPASS_TOKEN": {"value": SECRET_TOKEN}, "AZURE_CLIENT_ID": None}}),
        'settings file {path}: these "Values" are not strings: NORDPASS_TOKEN (object), AZURE_CLIENT_ID '
        '(null) (write "" to leave one empty)',
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "doctor", "status"])
def test_a_wrong_settings_path_is_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    args = ["run", "--once"] if command == "run" else [command]
    result = connector(*args, "--settings", "no-such.settings.json", cwd=tmp_path)
    assert result.returncode == 2, result
    result.assert_clean()
    expected = (
        f"SettingsFileError: settings file no-such.settings.json not found -> {SettingsFileError.action}"
    )
    assert result.error_line() == expected
    if command == "run":
        # `run` keeps its promise of exactly one JSON line on stdout.
        report = json.loads(result.stdout)
        assert (report["outcome"], report["error_class"], report["error"]) == (
            "failed",
            "SettingsFileError",
            expected,
        )
    else:
        assert result.stdout == ""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "command"),
    [(case, ("doctor", "status", "run")[i % 3]) for i, case in enumerate(BROKEN_FILES)],
)
def test_a_broken_settings_file_is_one_line_and_exit_2(tmp_path: Path, case: str, command: str) -> None:
    content, problem = BROKEN_FILES[case]
    path = tmp_path / "local.settings.json"
    path.write_text(content, encoding="utf-8")
    args = ["run", "--once"] if command == "run" else [command]
    result = connector(*args, "--settings", str(path))
    assert result.returncode == 2, result
    result.assert_clean(SECRET_TOKEN)
    assert (
        result.error_line() == f"SettingsFileError: {problem.format(path=path)} -> {SettingsFileError.action}"
    )


@pytest.mark.slow
def test_a_directory_given_as_settings_is_one_line(tmp_path: Path) -> None:
    result = connector("status", "--settings", str(tmp_path))
    assert result.returncode == 2
    result.assert_clean()
    assert result.error_line().startswith(f"SettingsFileError: settings file {tmp_path} is a directory")


@pytest.mark.slow
def test_a_settings_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"Values": {"CONNECTOR_INSTANCE": "x"}}).encode())
    result = connector("status", "--settings", str(path), env=clean_environment(tmp_path))
    assert result.returncode == 2
    result.assert_clean()
    # Read: what is reported now is the settings inside it (no storage configured), not the file.
    assert "checkpoint storage is not configured" in result.error_line()


# -- 2. no identity locally: doctor's lines are not buried -------------------------------------------


@pytest.mark.slow
def test_doctor_without_az_login_prints_its_checks_and_nothing_else(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = write_settings(tmp_path / "local.settings.json", sandbox.environ())
    result = connector("doctor", "--settings", str(settings), env=clean_environment(tmp_path))
    assert result.returncode == 1, result
    result.assert_clean(sandbox.token)
    assert result.stderr == "", "azure-identity's credential report must not bury the checks"
    lines = result.stdout.splitlines()
    identity = next(line for line in lines if line.startswith("FAIL  identity"))
    assert identity == (
        "FAIL  identity          DefaultAzureCredential (no IDENTITY_ENDPOINT: not running on Azure) could "
        "not get a token for https://monitor.azure.com (ClientAuthenticationError)"
    )
    assert lines[lines.index(identity) + 1].strip() == f"fix: {FIX_IDENTITY_LOCALLY}"
    assert lines[-1] == "doctor: 4 passed, 1 failed, 1 skipped"


@pytest.mark.slow
def test_log_level_warning_shows_the_sdk_warnings_again(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = write_settings(tmp_path / "local.settings.json", sandbox.environ())
    result = connector(
        "--log-level", "warning", "doctor", "--settings", str(settings), env=clean_environment(tmp_path)
    )
    assert result.returncode == 1
    result.assert_clean(sandbox.token)
    assert "WARNING azure.identity" in result.stderr, "--log-level is honoured for the SDK loggers"


@pytest.mark.slow
def test_status_with_identity_based_storage_and_no_az_login_is_one_line(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    values = sandbox.environ()
    del values["AzureWebJobsStorage"]
    values["AzureWebJobsStorage__accountName"] = "nordpassstore"
    settings = write_settings(tmp_path / "s.json", values)
    result = connector("status", "--settings", str(settings), env=clean_environment(tmp_path))
    assert result.returncode == 1, result
    result.assert_clean(sandbox.token)
    # No token, so no request was sent; the SDK's credential report stays out of the way.
    assert result.error_line().startswith(
        "could not read the health record: CheckpointUnavailable: checkpoint health read failed: "
        "ClientAuthenticationError"
    )


@pytest.mark.slow
def test_identity_based_storage_over_http_is_a_settings_problem(sandbox: Sandbox, tmp_path: Path) -> None:
    values = sandbox.environ()
    del values["AzureWebJobsStorage"]
    values["AzureWebJobsStorage__tableServiceUri"] = sandbox.azurite.endpoint("table")
    settings = write_settings(tmp_path / "s.json", values)
    result = connector("status", "--settings", str(settings), env=clean_environment(tmp_path))
    assert result.returncode == 2, result
    result.assert_clean(sandbox.token)
    assert result.error_line() == (
        "ConfigurationError: invalid configuration: AzureWebJobsStorage__tableServiceUri must use https -> "
        f"{ConfigurationError.action}"
    )


def test_an_unknown_log_level_is_a_usage_error(tmp_path: Path) -> None:
    result = connector("--log-level", "verbose", "status", env=clean_environment(tmp_path))
    assert result.returncode == 2
    result.assert_clean()
    assert "invalid choice: 'VERBOSE'" in result.stderr


# -- 3. the example's placeholders and the token's format are settings problems --------------------

EXAMPLE_PROBLEMS = [
    "NORDPASS_TOKEN holds a placeholder, not a real value: paste the token from the Admin Panel "
    "(Integrations > Events reporting > Microsoft Sentinel)",
    "DATA_COLLECTION_ENDPOINT holds a placeholder, not a real value: use the data collection rule's logs "
    "ingestion endpoint (a deployment output)",
    "DCR_IMMUTABLE_ID holds a placeholder, not a real value: use the data collection rule's immutableId "
    "(a deployment output)",
]


def copied_example(tmp_path: Path) -> Path:
    path = tmp_path / "local.settings.json"
    path.write_text((REPO / "local.settings.json.example").read_text(encoding="utf-8"), encoding="utf-8")
    return path


@pytest.mark.slow
def test_doctor_on_the_unchanged_example_lists_every_placeholder(tmp_path: Path) -> None:
    result = connector("doctor", "--settings", str(copied_example(tmp_path)), env=clean_environment(tmp_path))
    assert result.returncode == 2, result
    result.assert_clean()
    assert result.stderr == ""
    pad = " " * 24
    assert result.stdout.splitlines()[:5] == [
        "FAIL  settings          3 problems in the settings",
        *(f"{pad}- {p}" for p in EXAMPLE_PROBLEMS),
        f"{pad}fix: {ConfigurationError.action}",
    ]
    assert "FAIL  nordpass" not in result.stdout, "the token is judged with the other settings"
    assert result.stdout.splitlines()[5:] == [
        "SKIP  nordpass          skipped: the settings check did not pass",
        "SKIP  identity          skipped: the settings check did not pass",
        "SKIP  dcr               skipped: the identity check did not pass",
        "SKIP  checkpoint table  skipped: the settings check did not pass",
        # Not "neither service answered with a Date header": neither was contacted.
        "SKIP  clock             skipped: the settings check did not pass",
        "doctor: 0 passed, 1 failed, 5 skipped",
    ]


@pytest.mark.slow
def test_run_on_the_unchanged_example_is_one_line(tmp_path: Path) -> None:
    result = connector(
        "run", "--once", "--settings", str(copied_example(tmp_path)), env=clean_environment(tmp_path)
    )
    assert result.returncode == 2, result
    result.assert_clean()
    line = f"ConfigurationError: invalid configuration: {'; '.join(EXAMPLE_PROBLEMS)} -> {ConfigurationError.action}"
    assert result.error_line() == line
    assert json.loads(result.stdout)["error"] == line


@pytest.mark.slow
def test_a_token_with_a_space_fails_the_settings_check_not_the_nordpass_one(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    token = "np-pasted " + SECRET_TOKEN
    settings = write_settings(tmp_path / "s.json", sandbox.environ() | {"NORDPASS_TOKEN": token})
    result = connector("doctor", "--settings", str(settings), env=clean_environment(tmp_path))
    assert result.returncode == 2, result
    result.assert_clean(SECRET_TOKEN, "np-pasted")
    assert result.stdout.splitlines()[:2] == [
        "FAIL  settings          1 problem in the settings",
        " "
        * 24
        + "- NORDPASS_TOKEN contains spaces, line breaks, control or non-ASCII characters: paste the "
        "token alone, exactly as the Admin Panel shows it",
    ]


# -- 6. status needs only the storage settings -------------------------------------------------------

TOKEN_PROBLEM = (
    "NORDPASS_TOKEN contains spaces, line breaks, control or non-ASCII characters: paste the token alone, "
    "exactly as the Admin Panel shows it"
)


@pytest.mark.slow
def test_status_shows_the_health_record_when_the_token_setting_is_broken(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    good = write_settings(tmp_path / "good.json", sandbox.environ())
    first = connector("run", "--once", "--settings", str(good))  # identity from the fixture's environment
    assert first.returncode == 0, first
    run_id = json.loads(first.stdout)["run_id"]

    broken_token = "np-pasted " + SECRET_TOKEN
    broken = write_settings(
        tmp_path / "broken.json",
        sandbox.environ() | {"NORDPASS_TOKEN": broken_token, "DCR_IMMUTABLE_ID": "x"},
    )
    result = connector("status", "--settings", str(broken), env=clean_environment(tmp_path))
    assert result.returncode == 2, result
    result.assert_clean(SECRET_TOKEN, "np-pasted")
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"last run\s+ok at \S+ \(run {run_id}\)", lines[1]), lines
    assert lines[-1] == (
        "settings: 2 problems to fix before runs can succeed (`doctor` checks every setting): "
        f"{TOKEN_PROBLEM}; DCR_IMMUTABLE_ID must look like dcr-<32 hex digits> (the DCR's immutableId)"
    )

    as_json = connector("status", "--json", "--settings", str(broken), env=clean_environment(tmp_path))
    assert as_json.returncode == 2
    as_json.assert_clean(SECRET_TOKEN, "np-pasted")
    data = json.loads(as_json.stdout)
    assert data["health"]["last_run_id"] == run_id
    assert data["settings_problems"][0] == TOKEN_PROBLEM


@pytest.mark.slow
def test_status_still_refuses_broken_storage_settings_in_one_line(sandbox: Sandbox, tmp_path: Path) -> None:
    values = sandbox.environ() | {
        "NORDPASS_TOKEN": "np-pasted " + SECRET_TOKEN,
        "CHECKPOINT_TABLE_NAME": "no",
    }
    result = connector(
        "status",
        "--settings",
        str(write_settings(tmp_path / "s.json", values)),
        env=clean_environment(tmp_path),
    )
    assert result.returncode == 2
    result.assert_clean(SECRET_TOKEN)
    # Only what status itself cannot do without.
    assert result.error_line() == (
        "ConfigurationError: invalid configuration: CHECKPOINT_TABLE_NAME must be 3-63 letters and digits, "
        f"starting with a letter -> {ConfigurationError.action}"
    )


# -- 4. the example's storage is Azurite: when it is not running, say so -------------------------------

AZURITE_DOWN = (
    "Azurite is not running: AzureWebJobsStorage=UseDevelopmentStorage=true means the local storage "
    "emulator at 127.0.0.1:10002, and nothing answers there"
)


@pytest.fixture
def development_storage_port_free() -> None:
    if listens(DEVELOPMENT_TABLE_ADDRESS):
        pytest.skip("something (an Azurite of your own?) listens on 127.0.0.1:10002 here")


@pytest.mark.slow
@pytest.mark.usefixtures("development_storage_port_free")
def test_azurite_not_running_is_one_clear_line_for_doctor_run_and_status(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    values = sandbox.environ() | {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    settings = str(write_settings(tmp_path / "local.settings.json", values))

    doctor = connector("doctor", "--settings", settings)
    assert doctor.returncode == 1, doctor
    doctor.assert_clean(sandbox.token)
    lines = doctor.stdout.splitlines()
    table = lines.index(f"FAIL  checkpoint table  {AZURITE_DOWN}")
    assert lines[table + 1] == " " * 24 + f"fix: {START_AZURITE}"
    assert "npx azurite-table" in START_AZURITE and "real storage account" in START_AZURITE

    run = connector("run", "--once", "--settings", settings)
    assert run.returncode == 1, run
    run.assert_clean(sandbox.token)
    line = f"CheckpointUnavailable: {AZURITE_DOWN} -> {START_AZURITE}"
    assert run.error_line() == f"nordpass run failed: {line}"
    assert json.loads(run.stdout)["error"] == line

    status = connector("status", "--settings", settings)
    assert status.returncode == 1, status
    status.assert_clean(sandbox.token)
    assert status.error_line() == f"could not read the health record: {line}"


@pytest.mark.slow
def test_a_local_emulator_endpoint_with_nothing_behind_it_is_named(sandbox: Sandbox, tmp_path: Path) -> None:
    port = free_port()
    broken = re.sub(
        r"TableEndpoint=http://127\.0\.0\.1:\d+",
        f"TableEndpoint=http://127.0.0.1:{port}",
        sandbox.azurite.connection_string,
    )
    assert broken != sandbox.azurite.connection_string
    settings = write_settings(tmp_path / "s.json", sandbox.environ() | {"AzureWebJobsStorage": broken})
    status = connector("status", "--settings", str(settings))
    assert status.returncode == 1, status
    status.assert_clean(sandbox.token, broken.split("AccountKey=")[1].split(";")[0])
    assert status.error_line() == (
        f"could not read the health record: CheckpointUnavailable: nothing answers at 127.0.0.1:{port}, the "
        f"local storage emulator AzureWebJobsStorage points at -> {START_AZURITE}"
    )


@pytest.mark.slow
def test_a_malformed_connection_string_is_a_settings_problem(sandbox: Sandbox, tmp_path: Path) -> None:
    values = sandbox.environ() | {"AzureWebJobsStorage": "AccountName=nordpass;" + SECRET_TOKEN}
    settings = str(write_settings(tmp_path / "s.json", values))
    for args in (("status",), ("run", "--once")):
        result = connector(*args, "--settings", settings)
        assert result.returncode == 2, result
        result.assert_clean(SECRET_TOKEN)
        assert result.error_line().startswith(
            "ConfigurationError: invalid configuration: AzureWebJobsStorage is not a storage connection string"
        )


# -- 7. the advice fits the cause, and comes quickly -------------------------------------------------

NO_IDENTITY = (
    "SinkTokenUnavailable: no identity could get a token for the Logs Ingestion API "
    "(ClientAuthenticationError): no managed identity answered, and off Azure no `az login` session was "
    f"found -> {SinkTokenUnavailable.action}"
)


@pytest.mark.slow
def test_run_with_no_identity_at_all_says_so_and_loses_nothing(
    sandbox: Sandbox, event_factory: EventFactory, tmp_path: Path
) -> None:
    now = int(time.time())
    events = event_factory.background(now - 3600, now - 120, per_minute=1)
    sandbox.sim.add(events)
    settings = str(write_settings(tmp_path / "local.settings.json", sandbox.environ()))

    result = connector("run", "--once", "--settings", settings, env=clean_environment(tmp_path))
    assert result.returncode == 1, result
    result.assert_clean(sandbox.token)
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith(
        f"ERROR nordpass_connector: nordpass run failed: {NO_IDENTITY}"
    )
    # Nothing repeats it: no per-attempt line (nothing was sent) and no health row sent to the API
    # that just could not be reached with a token.
    assert [line for line in result.stderr.splitlines() if " WARNING " in line] == [], result.stderr
    # Only the connector's own lines: azure-identity's 13-line credential report would bury that one.
    assert all(" nordpass_connector" in line for line in result.stderr.splitlines()), result.stderr
    report = json.loads(result.stdout)
    assert (report["error"], report["error_class"], report["sent"]) == (
        NO_IDENTITY,
        "SinkTokenUnavailable",
        0,
    )
    for wrong in ("Monitoring Metrics Publisher", "30 minutes", "propagat"):
        assert wrong not in result.stdout + result.stderr, "no role advice when no token was ever issued"

    # With an identity (the fixture's token endpoint, as on Azure), the next run delivers everything.
    again = connector("run", "--once", "--settings", settings)
    assert again.returncode == 0, again
    assert json.loads(again.stdout)["sent"] == len(deliverable(events))
    sandbox.assert_exactly_once(events)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("http://127.0.0.1:{port}/activities/query", "connection refused"),
        ("https://api-activities.nowhere.invalid/activities/query", "the host name does not resolve"),
    ],
)
def test_run_against_an_unreachable_nordpass_fails_fast_with_doctors_advice(
    sandbox: Sandbox, tmp_path: Path, endpoint: str, why: str
) -> None:
    port = free_port()
    url = endpoint.format(port=port)
    host = f"127.0.0.1:{port}" if "{port}" in endpoint else "api-activities.nowhere.invalid"
    settings = write_settings(tmp_path / "s.json", sandbox.environ() | {"NORDPASS_ENDPOINT_URL": url})
    result = connector("run", "--once", "--settings", str(settings))
    assert result.returncode == 1, result
    result.assert_clean(sandbox.token)
    line = (
        f"SourceUnreachable: could not connect to {host}: {why} (3 attempts; it has not answered in this "
        f"run) -> {FIX_NORDPASS_UNREACHABLE}"
    )
    errors = [x for x in result.stderr.splitlines() if " ERROR " in x]
    assert len(errors) == 1 and errors[0].endswith(f"ERROR nordpass_connector: nordpass run failed: {line}")
    report = json.loads(result.stdout)
    assert (report["outcome"], report["error"]) == ("failed", line)
    # Two quick retries, not the run's whole budget of them (which used to end in outcome "ok").
    assert report["retries"] == {"nordpass:connection": 2}
    assert "nothing to do if it clears" not in result.stderr

    doctor = connector("doctor", "--settings", str(settings))
    assert doctor.returncode == 1
    assert f"fix: {FIX_NORDPASS_UNREACHABLE}" in doctor.stdout, "the run and doctor give the same advice"


@pytest.mark.slow
def test_a_connection_string_the_storage_sdk_cannot_parse_is_one_line_for_doctor_run_and_status(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # It has the shape the settings accept (a table endpoint), but the SDK refuses it; its text
    # could hold an account key, so it is named, never quoted.
    values = sandbox.environ() | {"AzureWebJobsStorage": "TableEndpoint=not-a-url"}
    settings = str(write_settings(tmp_path / "local.settings.json", values))
    message = "AzureWebJobsStorage is not a valid connection string"

    doctor = connector("doctor", "--settings", settings)
    assert doctor.returncode == 1, doctor
    doctor.assert_clean(sandbox.token, "not-a-url")
    lines = doctor.stdout.splitlines()
    table = lines.index(f"FAIL  checkpoint table  {message}")
    assert lines[table + 1] == " " * 24 + f"fix: {UNREACHABLE_ACTION}"

    line = f"CheckpointUnavailable: {message} -> {UNREACHABLE_ACTION}"
    run = connector("run", "--once", "--settings", settings)
    assert run.returncode == 1, run
    run.assert_clean(sandbox.token, "not-a-url")
    assert run.error_line() == f"nordpass run failed: {line}"

    status = connector("status", "--settings", settings)
    assert status.returncode == 1, status
    status.assert_clean(sandbox.token, "not-a-url")
    assert status.error_line() == f"could not read the health record: {line}"


@pytest.mark.slow
def test_demo_with_real_settings_and_no_identity_says_so_once(
    sandbox: Sandbox, event_factory: EventFactory, tmp_path: Path
) -> None:
    """`make demo SETTINGS=…` on a laptop without `az login`: the timer's one ERROR line and the
    demo's one summary line, not azure-identity's credential report or the cause twice."""
    now = int(time.time())
    sandbox.sim.add(event_factory.background(now - 3600, now - 120, per_minute=1))
    settings = write_settings(tmp_path / "local.settings.json", sandbox.environ())
    done = connector("--settings", str(settings), env=clean_environment(tmp_path), module="sandbox.demo")
    assert done.returncode == 1, done
    done.assert_clean(sandbox.token)
    # The line ends with the run summary as JSON (` | {...}`), as in the function host.
    [error] = done.stderr.splitlines()
    assert error.split(" | ")[0] == f"ERROR nordpass_connector: nordpass run failed: {NO_IDENTITY}"
    assert done.stdout.splitlines()[-1] == (
        "run failed: SinkTokenUnavailable (the ERROR line above says what happened and what to do)"
    )
