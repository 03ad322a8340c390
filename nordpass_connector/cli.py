"""Command line (`python -m nordpass_connector ...`), every command with `--settings FILE` to overlay a
Functions `local.settings.json` on the environment:

- `run --once`: one run through the timer's code path. stdout carries exactly one JSON line (the
  run report); logs go to stderr. Exit 0: the run finished its work; 1: a failed run; 2: a
  configuration problem.
- `doctor`: one line per configuration check (PASS / FAIL with the fix / SKIP). Exit 0 only when
  every check passed; 2 when the settings themselves are invalid; 1 otherwise.
- `status [--json]`: the health record the runs keep beside the checkpoint. It needs only the storage
  settings, so it shows the record even when another setting is wrong (and names those problems).
  Exit 0 when the last run succeeded; 1 when it failed, or no run has recorded health yet; 2 for a
  configuration problem.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from . import doctor, health
from .adapters.emulator import emulator_not_running
from .adapters.table_store import TableStore
from .clock import SystemClock
from .composition import build_store, quiet_third_party_loggers, run_from_environment
from .errors import (
    CheckpointDamaged,
    CheckpointUnavailable,
    ConfigurationError,
    ConnectorError,
    SettingsFileError,
)
from .pipeline import RunFailed
from .report import checkpoint_summary
from .settings import load_settings, load_store_settings
from .settings_file import read_values

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEAD_LETTER_COUNT_LIMIT = 100


@contextmanager
def environment_with(values: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """The process environment overlaid with a settings file's Values, for the command's duration.

    The overlay is applied to the process environment itself, as `func start` applies
    local.settings.json, so the SDKs read the same values the connector does: azure-identity's
    IDENTITY_ENDPOINT / AZURE_CLIENT_ID, requests' REQUESTS_CA_BUNDLE. Restored afterwards.
    """
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield dict(os.environ)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _print(payload: dict[str, object]) -> None:
    sys.stdout.write(orjson.dumps(payload).decode() + "\n")
    sys.stdout.flush()


def configuration_failed(command: str, error: ConfigurationError) -> int:
    """One line on stderr (and, for `run`, the failed run report its stdout promises); exit 2."""
    logging.getLogger("nordpass_connector").error("%s", error.describe())
    if command == "run":
        _print({"outcome": "failed", "error": error.describe(), "error_class": type(error).__name__})
    return EXIT_CONFIG


def cmd_run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        report = run_from_environment(environ)
    except ConfigurationError as error:
        return configuration_failed("run", error)
    except RunFailed as failure:
        cause = failure.cause
        if isinstance(cause, CheckpointUnavailable):
            cause = emulator_not_running(load_store_settings(environ).storage) or cause
            failure.report.error = cause.describe()
        logging.getLogger("nordpass_connector").error("nordpass run failed: %s", cause.describe())
        _print(failure.report.to_dict())
        return EXIT_FAILED
    except ConnectorError as error:
        logging.getLogger("nordpass_connector").error("nordpass run failed: %s", error.describe())
        _print({"outcome": "failed", "error": error.describe(), "error_class": type(error).__name__})
        return EXIT_FAILED
    _print(report.to_dict())
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    checks = doctor.run_doctor(environ, timeout=args.timeout)
    sys.stdout.write("\n".join(doctor.render(checks)) + "\n")
    sys.stdout.flush()
    if all(c.passed for c in checks):
        return EXIT_OK
    settings_check = next(c for c in checks if c.name is doctor.CheckName.SETTINGS)
    return EXIT_CONFIG if not settings_check.passed else EXIT_FAILED


def cmd_status(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    quiet_third_party_loggers()
    out = logging.getLogger("nordpass_connector")
    try:
        settings = load_store_settings(environ)
    except ConfigurationError as error:
        out.error("%s", error.describe())
        return EXIT_CONFIG
    # The record is what a person needs most when the runs fail on a setting (a revoked or mistyped
    # token): shown anyway, with the problems the runs will stop on.
    try:
        load_settings(environ)
        run_problems: list[str] = []
    except ConfigurationError as error:
        run_problems = error.problems
    now = SystemClock().now()
    try:
        store = build_store(settings, environ)
        try:
            record = health.HealthRecord.from_fields(store.read_health())
            summary = _checkpoint_state(store)
            # Only counted, never shown: a dead letter holds the event itself.
            dead_letters = store.count_dead_letters(limit=DEAD_LETTER_COUNT_LIMIT)
        finally:
            store.close()
    except ConnectorError as error:
        if isinstance(error, CheckpointUnavailable):
            error = emulator_not_running(settings.storage) or error
        out.error("could not read the health record: %s", error.describe())
        return EXIT_FAILED
    dead_text = f"{dead_letters}+" if dead_letters >= DEAD_LETTER_COUNT_LIMIT else str(dead_letters)
    if args.json:
        _print(
            {
                "instance": settings.instance,
                "health": record.to_dict(now=now) if record else None,
                "checkpoint": summary,
                # A number for scripts; counted up to the limit, and `capped` says it stopped there.
                "dead_letters": dead_letters,
                "dead_letters_capped": dead_letters >= DEAD_LETTER_COUNT_LIMIT,
                "settings_problems": run_problems,
            }
        )
    else:
        lines = health.render(record, now=now, instance=settings.instance)
        if summary is not None and "damaged" in summary:
            lines.append(f"checkpoint: {summary['damaged']}")
        elif summary is not None:
            progress = summary.get("window_in_progress")
            lines.append(
                f"checkpoint: windows done to {summary.get('done_to') or '-'}"
                + (f", window in progress {progress[0]} .. {progress[1]}" if progress else "")
            )
        lines.append(f"dead letters: {dead_text} in table {settings.checkpoint_table}deadletters")
        if run_problems:
            count = len(run_problems)
            lines.append(
                f"settings: {count} problem{'s' if count != 1 else ''} to fix before runs can succeed "
                f"(`doctor` checks every setting): {'; '.join(run_problems)}"
            )
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    if run_problems:
        return EXIT_CONFIG
    return EXIT_OK if record is not None and record.healthy else EXIT_FAILED


def _checkpoint_state(store: TableStore) -> dict[str, Any] | None:
    """Where the runs stand, for `status`; a damaged row is named (row and property) with what to
    do, beside the health record, rather than hidden behind it."""
    try:
        stored = store.load()
    except CheckpointDamaged as damage:
        return {"damaged": damage.describe()}
    return checkpoint_summary(stored.checkpoint) if stored is not None else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nordpass_connector")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="stderr log level (default INFO for run; ERROR for doctor and status, whose stdout already "
        "says what failed). The Azure SDK and HTTP libraries log only errors unless this is given; then "
        "they follow it, but never log below WARNING",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the connector (the timer's code path)")
    run.add_argument("--once", action="store_true", required=True, help="one cycle, then exit")
    run.add_argument("--settings", help="a local.settings.json whose Values overlay the environment")
    run.set_defaults(handler=cmd_run)
    check = commands.add_parser("doctor", help="check the configuration end to end, with fixes")
    check.add_argument("--settings", help="a local.settings.json whose Values overlay the environment")
    check.add_argument("--timeout", type=float, default=10.0, help="seconds per network call (default 10)")
    check.set_defaults(handler=cmd_doctor)
    status = commands.add_parser("status", help="print the health record the runs keep")
    status.add_argument("--settings", help="a local.settings.json whose Values overlay the environment")
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    status.set_defaults(handler=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = args.log_level or ("INFO" if args.command == "run" else "ERROR")
    logging.basicConfig(
        stream=sys.stderr, level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Unless asked for (--log-level), the SDKs' own warnings stay out: every failure they would
    # describe ends in one line of ours that names its cause and fix, and the azure-identity report
    # of a failed credential chain alone is 13 lines.
    sdk_level = logging.getLevelName(args.log_level) if args.log_level else logging.ERROR
    previous = quiet_third_party_loggers(sdk_level)
    try:
        try:
            values = read_values(args.settings) if args.settings else {}
        except SettingsFileError as error:
            return configuration_failed(args.command, error)
        with environment_with(values) as environ:
            return int(args.handler(args, environ))
    finally:
        for name, previous_level in previous.items():  # for in-process callers (tests)
            logging.getLogger(name).setLevel(previous_level)
