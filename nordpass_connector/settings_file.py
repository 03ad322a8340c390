"""A Functions `local.settings.json`: the `Values` object the command line overlays on the environment.

Every way the file can be unusable (missing, unreadable, not JSON, not shaped like a settings file)
ends in one SettingsFileError that names the file and what is wrong with it. The file's contents are
never quoted: it holds the NordPass token and possibly a storage key. Only setting names, JSON
positions and type names appear in messages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import SettingsFileError

VALUES = "Values"


def read_values(path: str | Path) -> dict[str, str]:
    """The file's `Values` as environment strings; raises SettingsFileError."""
    where = f"settings file {path}"
    return _as_environment(_values_object(_read_text(path, where), where), where)


def _read_text(path: str | Path, where: str) -> str:
    try:
        # utf-8-sig: editors on Windows often save JSON with a byte-order mark.
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SettingsFileError(f"{where} not found") from None
    except IsADirectoryError:
        raise SettingsFileError(f"{where} is a directory, not a file") from None
    except PermissionError:
        raise SettingsFileError(f"{where} cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise SettingsFileError(f"{where} is not UTF-8 text") from None
    except OSError as exc:
        raise SettingsFileError(f"{where} cannot be read ({type(exc).__name__})") from None


def _values_object(text: str, where: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # `msg` is the parser's own phrase ("Expecting value"); it never quotes the document.
        raise SettingsFileError(
            f"{where} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(document, dict):
        raise SettingsFileError(
            f'{where} holds a JSON {_kind(document)}, not an object with a "{VALUES}" object'
        )
    if VALUES not in document:
        raise SettingsFileError(
            f'{where} has no "{VALUES}" object: the settings go inside "{VALUES}", as in '
            "local.settings.json.example"
        )
    values = document[VALUES]
    if not isinstance(values, dict):
        raise SettingsFileError(
            f'"{VALUES}" in {where} is a JSON {_kind(values)}, not an object of setting names and values'
        )
    return values


def _as_environment(values: dict[str, Any], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    unusable: list[str] = []
    for name, value in values.items():
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            out[name] = str(value)
        else:
            unusable.append(f"{name} ({_kind(value)})")
    if unusable:
        raise SettingsFileError(
            f'{where}: these "{VALUES}" are not strings: {", ".join(unusable)} (write "" to leave one empty)'
        )
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    return "number"
