"""The ASIM parsers for NordPass: the schema facts they are held to, and loading them from YAML.

Each parser is one file in `content/parsers/`, in the shape of the Azure-Sentinel repository's ASIM
parser YAML (`ParserName`, `ParserParams`, `ParserQuery`, `Normalization.Schema/Version`). The
`ParserQuery` is the function body exactly as the workspace function holds it: it refers to the
parameters by name, so the same text is deployed (`savedSearches` with `functionAlias` and
`functionParameters`, see `deploy/build_template.py`), analysed by the Kusto language service
(declared as a stored function) and executed locally (`content/localkql.py`).

The schema facts below are taken from Microsoft's ASIM reference pages (normalization-common-fields,
normalization-schema-authentication / -user-management / -audit, normalization-entity-user,
normalization-about-schemas) and from the empty custom unifying parsers Microsoft ships
(Azure-Sentinel `ASIM/deploy/EmptyCustomUnifyingParsers/Im_<Schema>Custom.json`), whose parameter
lists are the ones a source-specific filtering parser must accept to be registered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; only safe_load is used

CONTENT_DIR = Path(__file__).resolve().parent
PARSERS_DIR = CONTENT_DIR / "parsers"

VENDOR = "Nord Security"
PRODUCT = "NordPass"
# ASIM names a cloud source's device after the product ("for cloud sources, for which there is no
# apparent device, use the same value as the Event Product field").
DVC = PRODUCT


@dataclass(frozen=True)
class Param:
    """One function parameter as ParserParams writes it."""

    name: str
    type: str
    default: str

    def declaration(self) -> str:
        return f"{self.name}:{self.type}={self.default}"


@dataclass(frozen=True)
class Schema:
    """What one ASIM schema version requires of a parser (types are Kusto type names)."""

    name: str
    version: str
    doc: str
    mandatory: Mapping[str, str]
    # Recommended, optional, conditional and alias fields the NordPass parsers fill: held to
    # their type as strictly as the mandatory ones.
    typed: Mapping[str, str]
    # Field -> allowed values. An empty value is allowed only for fields not listed in
    # `never_empty` (optional enumerated fields a source may leave unset).
    enumerations: Mapping[str, frozenset[str]]
    never_empty: frozenset[str]
    # Conditional fields: (field, the field whose presence makes it mandatory).
    conditional: Sequence[tuple[str, str]]
    filtering_params: Sequence[Param]
    custom_filtering_unifier: str
    custom_parameterless_unifier: str

    @property
    def filtering_parser(self) -> str:
        return f"vim{self.name}{PRODUCT}"

    @property
    def parameterless_parser(self) -> str:
        return f"ASim{self.name}{PRODUCT}"

    def registration_line(self) -> str:
        """The line to add to the custom filtering unifier (named arguments, as Microsoft documents
        it; this parser does not take `pack`, so it is not forwarded)."""
        names = [p.name for p in self.filtering_params if p.name != "disabled"]
        args = ", ".join(f"{n}={n}" for n in names)
        return f"{self.filtering_parser}({args}, disabled=false)"

    def custom_unifier(self) -> str:
        """`Im_<Schema>Custom` as a workspace holds it after registration (its documented parameter
        list, including `pack`), declared and called: what the built-in `_Im_<Schema>` runs."""
        params = ", ".join(p.declaration() for p in self.filtering_params) + ", pack:bool=false"
        return (
            f"let {self.custom_filtering_unifier} = ({params}) {{\n"
            f"union isfuzzy=true\n    {self.registration_line()}\n}};\n{self.custom_filtering_unifier}()"
        )


# -- shared facts ---------------------------------------------------------------------------------

COMMON_MANDATORY: Mapping[str, str] = {
    "TimeGenerated": "datetime",
    "EventCount": "int",
    "EventStartTime": "datetime",
    "EventEndTime": "datetime",
    "EventType": "string",
    "EventResult": "string",
    "EventProduct": "string",
    "EventVendor": "string",
    "EventSchema": "string",
    "EventSchemaVersion": "string",
    "Dvc": "string",
}
EVENT_RESULT = frozenset({"Success", "Partial", "Failure", "NA"})
EVENT_SEVERITY = frozenset({"Informational", "Low", "Medium", "High"})
USERNAME_TYPE = frozenset({"UPN", "Windows", "DN", "Simple", "AWSId"})
USER_TYPE = frozenset(
    {
        "Regular",
        "Machine",
        "Admin",
        "System",
        "Application",
        "Service Principal",
        "Service",
        "Anonymous",
        "Other",
    }
)
APP_TYPE = frozenset({"Process", "Service", "Resource", "URL", "SaaS application", "CSP", "Other"})
DEVICE_TYPE = frozenset({"Computer", "Mobile Device", "IOT Device", "Other"})

_STARTTIME = Param("starttime", "datetime", "datetime(null)")
_ENDTIME = Param("endtime", "datetime", "datetime(null)")
_DISABLED = Param("disabled", "bool", "false")


def _dyn(name: str) -> Param:
    return Param(name, "dynamic", "dynamic([])")


_COMMON_TYPED: Mapping[str, str] = {
    "EventSeverity": "string",
    "EventResultDetails": "string",
    "EventOriginalType": "string",
    "EventOriginalUid": "string",
    "EventSubType": "string",
    "SrcIpAddr": "string",
    "IpAddr": "string",
    "Src": "string",
    "AdditionalFields": "dynamic",
}

AUTHENTICATION = Schema(
    name="Authentication",
    version="0.1.4",
    doc="https://learn.microsoft.com/azure/sentinel/normalization-schema-authentication",
    mandatory={**COMMON_MANDATORY},
    typed={
        **_COMMON_TYPED,
        "EventOriginalResultDetails": "string",
        "LogonMethod": "string",
        "LogonProtocol": "string",
        "TargetUsername": "string",
        "TargetUsernameType": "string",
        "User": "string",
        "ActorUsername": "string",
        "ActorUsernameType": "string",
        "TargetAppName": "string",
        "TargetAppType": "string",
        "Application": "string",
        "LogonTarget": "string",
        "ActingAppName": "string",
        "ActingAppType": "string",
        "SrcDeviceType": "string",
        "SrcGeoCountry": "string",
        "SrcGeoRegion": "string",
        "SrcGeoCity": "string",
        "SrcGeoLatitude": "real",
        "SrcGeoLongitude": "real",
        "ASimMatchingUsername": "string",
    },
    enumerations={
        "EventSchema": frozenset({"Authentication"}),
        "EventType": frozenset({"Logon", "Logoff", "Elevate"}),
        "EventResult": EVENT_RESULT,
        "EventResultDetails": frozenset(
            {
                "No such user or password",
                "No such user",
                "Incorrect password",
                "Incorrect key",
                "Account expired",
                "Password expired",
                "User locked",
                "User disabled",
                "Logon violates policy",
                "Session expired",
                "Other",
            }
        ),
        "EventSeverity": EVENT_SEVERITY,
        "EventSubType": frozenset(
            {"System", "Interactive", "RemoteInteractive", "Service", "RemoteService", "Remote", "AssumeRole"}
        ),
        "LogonMethod": frozenset(
            {
                "Managed Identity",
                "Service Principal",
                "Username & Password",
                "Multi factor authentication",
                "Passwordless",
                "PKI",
                "PAM",
                "Other",
            }
        ),
        "TargetUsernameType": USERNAME_TYPE,
        "ActorUsernameType": USERNAME_TYPE,
        "TargetAppType": APP_TYPE,
        "ActingAppType": APP_TYPE,
        "SrcDeviceType": DEVICE_TYPE,
        "ASimMatchingUsername": frozenset({"TargetUsername", "ActorUsername", "Both", "-"}),
    },
    never_empty=frozenset(
        {"EventSchema", "EventType", "EventResult", "EventSeverity", "ASimMatchingUsername"}
    ),
    conditional=(
        ("TargetUsernameType", "TargetUsername"),
        ("ActorUsernameType", "ActorUsername"),
        ("TargetAppType", "TargetAppName"),
        ("User", "TargetUsername"),
        ("IpAddr", "SrcIpAddr"),
        ("Application", "TargetAppName"),
    ),
    filtering_params=(
        _STARTTIME,
        _ENDTIME,
        _dyn("username_has_any"),
        _dyn("targetappname_has_any"),
        _dyn("srcipaddr_has_any_prefix"),
        _dyn("srchostname_has_any"),
        _dyn("eventtype_in"),
        _dyn("eventresultdetails_in"),
        Param("eventresult", "string", "'*'"),
        _DISABLED,
    ),
    custom_filtering_unifier="Im_AuthenticationCustom",
    custom_parameterless_unifier="ASim_AuthenticationCustom",
)

USER_MANAGEMENT = Schema(
    name="UserManagement",
    version="0.1.2",
    doc="https://learn.microsoft.com/azure/sentinel/normalization-schema-user-management",
    # The schema makes EventSeverity and ActorUsername mandatory on top of the common fields.
    mandatory={**COMMON_MANDATORY, "EventSeverity": "string", "ActorUsername": "string"},
    typed={
        **_COMMON_TYPED,
        "ActorUsernameType": "string",
        "User": "string",
        "TargetUsername": "string",
        "TargetUsernameType": "string",
        "GroupId": "string",
        "PreviousPropertyValue": "string",
        "NewPropertyValue": "string",
        "ActingAppName": "string",
        "ActingAppType": "string",
    },
    enumerations={
        "EventSchema": frozenset({"UserManagement"}),
        "EventType": frozenset(
            {
                "UserCreated",
                "UserDeleted",
                "UserModified",
                "UserLocked",
                "UserUnlocked",
                "UserDisabled",
                "UserEnabled",
                "PasswordChanged",
                "PasswordReset",
                "GroupCreated",
                "GroupDeleted",
                "GroupModified",
                "UserAddedToGroup",
                "UserRemovedFromGroup",
                "GroupEnumerated",
                "UserRead",
                "GroupRead",
            }
        ),
        "EventResult": EVENT_RESULT,
        "EventResultDetails": frozenset({"NotAuthorized", "Other"}),
        "EventSeverity": EVENT_SEVERITY,
        "ActorUsernameType": frozenset({"UPN", "Windows", "DN", "Simple"}),
        "TargetUsernameType": frozenset({"UPN", "Windows", "DN", "Simple"}),
        "ActingAppType": frozenset({"Process", "Browser", "Resource", "Other"}),
    },
    never_empty=frozenset({"EventSchema", "EventType", "EventResult", "EventSeverity", "ActorUsernameType"}),
    conditional=(
        ("ActorUsernameType", "ActorUsername"),
        ("TargetUsernameType", "TargetUsername"),
        ("User", "ActorUsername"),
        ("IpAddr", "SrcIpAddr"),
    ),
    filtering_params=(
        _STARTTIME,
        _ENDTIME,
        _dyn("srcipaddr_has_any_prefix"),
        _dyn("targetusername_has_any"),
        _dyn("actorusername_has_any"),
        _dyn("eventtype_in"),
        _DISABLED,
    ),
    custom_filtering_unifier="Im_UserManagementCustom",
    custom_parameterless_unifier="ASim_UserManagementCustom",
)

AUDIT_EVENT = Schema(
    name="AuditEvent",
    version="0.1.2",
    doc="https://learn.microsoft.com/azure/sentinel/normalization-schema-audit",
    # The audit fields Operation and Object are mandatory in this schema.
    mandatory={**COMMON_MANDATORY, "Operation": "string", "Object": "string"},
    typed={
        **_COMMON_TYPED,
        "ObjectType": "string",
        "OriginalObjectType": "string",
        "ObjectId": "string",
        "OldValue": "string",
        "NewValue": "string",
        "Value": "string",
        "ValueType": "string",
        "ActorUsername": "string",
        "ActorUsernameType": "string",
        "User": "string",
        "TargetAppName": "string",
        "TargetAppType": "string",
        "Application": "string",
        "ActingAppName": "string",
        "ActingAppType": "string",
    },
    enumerations={
        "EventSchema": frozenset({"AuditEvent"}),
        "EventType": frozenset(
            {
                "Set",
                "Read",
                "Create",
                "Delete",
                "Execute",
                "Install",
                "Clear",
                "Enable",
                "Disable",
                "Initialize",
                "Start",
                "Stop",
                "Other",
            }
        ),
        "EventResult": EVENT_RESULT,
        "EventSeverity": EVENT_SEVERITY,
        "ObjectType": frozenset(
            {
                "Cloud Resource",
                "Configuration Atom",
                "Policy Rule",
                "Event Log",
                "Scheduled Task",
                "Service",
                "Directory Service Object",
                "Other",
            }
        ),
        "ValueType": frozenset({"Other"}),
        "ActorUsernameType": USERNAME_TYPE,
        "TargetAppType": APP_TYPE,
        "ActingAppType": APP_TYPE,
    },
    never_empty=frozenset({"EventSchema", "EventType", "EventResult", "EventSeverity", "ObjectType"}),
    conditional=(
        ("ObjectType", "Object"),
        ("ValueType", "NewValue"),
        ("ActorUsernameType", "ActorUsername"),
        ("TargetAppType", "TargetAppName"),
        ("User", "ActorUsername"),
        ("Value", "NewValue"),
        ("IpAddr", "SrcIpAddr"),
    ),
    filtering_params=(
        _STARTTIME,
        _ENDTIME,
        _dyn("srcipaddr_has_any_prefix"),
        _dyn("actorusername_has_any"),
        _dyn("operation_has_any"),
        _dyn("eventtype_in"),
        Param("eventresult", "string", "'*'"),
        _dyn("object_has_any"),
        _dyn("newvalue_has_any"),
        _DISABLED,
    ),
    custom_filtering_unifier="Im_AuditEventCustom",
    custom_parameterless_unifier="ASim_AuditEventCustom",
)

SCHEMAS: Mapping[str, Schema] = {s.name: s for s in (AUTHENTICATION, USER_MANAGEMENT, AUDIT_EVENT)}


# -- the parser files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Parser:
    name: str
    schema: Schema
    schema_version: str
    title: str
    description: str
    version: str
    params: tuple[Param, ...]
    query: str
    path: Path
    references: tuple[Mapping[str, str], ...] = field(default=())

    @property
    def filtering(self) -> bool:
        return self.name.startswith("vim")

    @property
    def function_parameters(self) -> str:
        """`functionParameters` of the savedSearch: `a:type=default, ...`."""
        return ", ".join(p.declaration() for p in self.params)

    def kusto_function(self) -> dict[str, str]:
        """The parser as a stored function for the Kusto language service (kql-check.js)."""
        return {
            "name": self.name,
            "parameters": f"({self.function_parameters})",
            "body": "{\n" + self.query + "\n}",
        }

    def declared_call(self, call: str | None = None) -> str:
        """A query that declares this parser as a `let` function, then calls it (default: no
        arguments): the analyzer then reports problems inside the body at their own positions."""
        return f"let {self.name} = ({self.function_parameters}) {{\n{self.query}\n}};\n{call or self.name + '()'}"


_NAME = re.compile(r"^(vim|ASim)(Authentication|UserManagement|AuditEvent)NordPass$")


def _params(raw: Any, source: str) -> tuple[Param, ...]:
    if not isinstance(raw, list):
        raise ValueError(f"{source}: ParserParams is not a list")
    params = []
    for item in raw:
        if not isinstance(item, dict) or not {"Name", "Type", "Default"} <= set(item):
            raise ValueError(f"{source}: every ParserParams entry needs Name, Type and Default")
        default = item["Default"]
        text = ("true" if default else "false") if isinstance(default, bool) else str(default)
        params.append(Param(str(item["Name"]), str(item["Type"]), text))
    return tuple(params)


def load_parser(path: Path) -> Parser:
    source = f"content/parsers/{path.name}"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{source}: not a YAML mapping")
    name = str(data.get("ParserName", ""))
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"{source}: ParserName {name!r} is not (vim|ASim)<Schema>NordPass")
    normalization = data.get("Normalization") or {}
    schema = SCHEMAS.get(str(normalization.get("Schema")))
    if schema is None or schema.name != match.group(2):
        raise ValueError(f"{source}: Normalization.Schema does not match the parser name {name}")
    parser_info = data.get("Parser") or {}
    return Parser(
        name=name,
        schema=schema,
        schema_version=str(normalization.get("Version", "")),
        title=str(parser_info.get("Title", name)),
        description=str(data.get("Description", "")).strip(),
        version=str(parser_info.get("Version", "")),
        params=_params(data.get("ParserParams") or [], source),
        query=str(data.get("ParserQuery", "")).strip(),
        path=path,
        references=tuple(data.get("References") or ()),
    )


def parser_paths(directory: Path = PARSERS_DIR) -> list[Path]:
    return sorted(directory.glob("*.yaml")) if directory.is_dir() else []


def load_parsers(directory: Path = PARSERS_DIR) -> list[Parser]:
    """Every parser, checked against its schema's naming and parameter conventions."""
    parsers = [load_parser(p) for p in parser_paths(directory)]
    problems = [problem for parser in parsers for problem in convention_problems(parser)]
    if problems:
        raise ValueError("; ".join(problems))
    return parsers


def convention_problems(parser: Parser) -> list[str]:
    """What keeps a parser from plugging into Microsoft's unifying parsers: the schema version, the
    file name, and the exact standard filtering parameters (names, types, defaults, order)."""
    problems = []
    where = f"content/parsers/{parser.path.name}"
    if parser.schema_version != parser.schema.version:
        problems.append(
            f"{where}: targets {parser.schema.name} {parser.schema_version}, not {parser.schema.version}"
        )
    if parser.path.stem != parser.name:
        problems.append(f"{where}: file name should be {parser.name}.yaml")
    expected = tuple(parser.schema.filtering_params) if parser.filtering else (_DISABLED,)
    if parser.params != expected:
        wanted = ", ".join(p.declaration() for p in expected)
        problems.append(f"{where}: parameters must be exactly ({wanted})")
    if not parser.query:
        problems.append(f"{where}: empty ParserQuery")
    return problems


def kusto_functions(parsers: Sequence[Parser] | None = None) -> list[dict[str, str]]:
    return [p.kusto_function() for p in (load_parsers() if parsers is None else parsers)]
