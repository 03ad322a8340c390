"""Command line: `python -m nordpass_connector run --once [--settings local.settings.json]`.

stdout carries exactly one JSON line (the run report); logs go to stderr. Exit code 0 means the run
finished its work; 1 a failed run; 2 a configuration problem.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from .composition import run_from_environment
from .errors import ConfigurationError, ConnectorError
from .pipeline import RunFailed

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def environment_with(settings_file: str | None) -> dict[str, str]:
    """The process environment, overlaid with a Functions `local.settings.json` file's Values."""
    environ = dict(os.environ)
    if settings_file:
        values = json.loads(Path(settings_file).read_text(encoding="utf-8")).get("Values", {})
        environ.update({str(k): str(v) for k, v in values.items()})
    return environ


def _print(payload: dict[str, object]) -> None:
    sys.stdout.write(orjson.dumps(payload).decode() + "\n")
    sys.stdout.flush()


def cmd_run(args: argparse.Namespace) -> int:
    environ = environment_with(args.settings)
    try:
        report = run_from_environment(environ)
    except ConfigurationError as error:
        logging.getLogger("nordpass_connector").error("%s", error.describe())
        _print({"outcome": "failed", "error": error.describe(), "error_class": "ConfigurationError"})
        return EXIT_CONFIG
    except RunFailed as failure:
        logging.getLogger("nordpass_connector").error("run failed: %s", failure.cause.describe())
        _print(failure.report.to_dict())
        return EXIT_FAILED
    except ConnectorError as error:
        logging.getLogger("nordpass_connector").error("run failed: %s", error.describe())
        _print({"outcome": "failed", "error": error.describe(), "error_class": type(error).__name__})
        return EXIT_FAILED
    _print(report.to_dict())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nordpass_connector")
    parser.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the connector (the timer's code path)")
    run.add_argument("--once", action="store_true", required=True, help="one cycle, then exit")
    run.add_argument("--settings", help="a local.settings.json whose Values overlay the environment")
    run.set_defaults(handler=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handler = args.handler
    return int(handler(args))
