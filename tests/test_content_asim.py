"""The ASIM parsers: held to Microsoft's schema definitions, statically and on rows.

* Statically, the real Kusto language service (`@kusto/language-service-next`) analyses each parser
  declared with its parameters (errors inside the body are reported where they are), and each
  parser called as a stored function, with no arguments and with every filtering parameter named;
  the output schema of that call must carry every mandatory field of the targeted schema version
  with the right type.
* Dynamically, duckdb-kql runs each parser as a stored function (`content.localkql`) over rows the
  connector's own mapping builds from sandbox events: every catalog pair, steady background
  activity and the scripted incidents. Mandatory fields are filled, enumerated fields hold only
  the schema's values, conditional fields follow the field they describe, the scripted brute force
  and password spray come out as the right Authentication failures, and each filtering parameter
  removes exactly the rows outside it.

Schema facts (`content.asim`) come from the ASIM reference pages; see that module's docstring.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from content import asim, kql, localkql, localrun
from sandbox import catalog, datagen

PARSERS = asim.load_parsers()
BY_NAME = {p.name: p for p in PARSERS}
FILTERING = [p for p in PARSERS if p.filtering]
ATTACKER_IP = "203.0.113.66"
SPRAY_IP = "203.0.113.77"


# -- the files ------------------------------------------------------------------------------------


def test_both_parsers_for_every_schema() -> None:
    names = {p.name for p in PARSERS}
    for schema in asim.SCHEMAS.values():
        assert {schema.filtering_parser, schema.parameterless_parser} <= names, schema.name
    assert len(PARSERS) == 2 * len(asim.SCHEMAS)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
def test_parser_follows_the_conventions(parser: asim.Parser) -> None:
    assert asim.convention_problems(parser) == []
    assert parser.schema_version == parser.schema.version
    if not parser.filtering:
        # The parameter-less parser is the filtering one with no filter: one body, no drift.
        assert parser.query == f"{parser.schema.filtering_parser}(disabled=disabled)"


def test_convention_check_can_fail() -> None:
    parser = BY_NAME["vimAuthenticationNordPass"]
    renamed = asim.Parser(**{**parser.__dict__, "params": (*parser.params[:2], *parser.params[3:])})
    assert any("parameters must be exactly" in p for p in asim.convention_problems(renamed))
    old = asim.Parser(**{**parser.__dict__, "schema_version": "0.1.0"})
    assert any("targets Authentication 0.1.0" in p for p in asim.convention_problems(old))


def _mapped_pairs(parser: asim.Parser) -> set[tuple[str, str]]:
    """The `event_type.action` literals a parser's mapping names."""
    return {
        (m.group(1), m.group(2))
        for m in re.finditer(r'"([a-z_0-9]+)\.([a-z_0-9]+)"', parser.query)
        if (m.group(1), m.group(2)) in catalog.PAIR_SET or m.group(1) in {t for t, _ in catalog.PAIRS}
    }


def test_mappings_name_only_catalog_pairs_and_the_schemas_do_not_overlap() -> None:
    mapped = {p.schema.name: _mapped_pairs(p) for p in FILTERING}
    for name, pairs in mapped.items():
        unknown = pairs - catalog.PAIR_SET
        assert not unknown, f"{name} maps pairs that are not in the catalog: {sorted(unknown)}"
    schemas = list(mapped)
    for i, a in enumerate(schemas):
        for b in schemas[i + 1 :]:
            assert not mapped[a] & mapped[b], f"{a} and {b} both claim {sorted(mapped[a] & mapped[b])}"
    # What the issue asks each schema to cover.
    assert {
        ("login", "user_login_successful"),
        ("login", "user_login_failed"),
        ("lock", "master_validated"),
        ("lock", "master_failed"),
    } <= mapped["Authentication"]
    assert {
        ("invites", "user_invited"),
        ("access", "user_status_updated"),
        ("roles", "user_role_updated"),
        ("groups", "group_users_added"),
        ("groups", "group_users_removed"),
    } <= mapped["UserManagement"]
    assert {
        ("global_settings", "password_policy_updated"),
        ("integrations", "activities_token_revoked"),
        ("scim_credentials", "scim_credentials_created"),
        ("item_access", "vault_exported"),
        ("recovery_code", "recovery_reset"),
        ("totp", "2fa_device_enrolled"),
    } <= mapped["AuditEvent"]


# -- the Kusto language service --------------------------------------------------------------------


def _named_call(parser: asim.Parser) -> str:
    """A call naming every filtering parameter with a non-default value of its type."""
    samples = {
        "datetime": "ago(1d)",
        "dynamic": "dynamic(['x'])",
        "string": "'Failure'",
        "bool": "false",
    }
    args = ", ".join(f"{p.name}={samples[p.type]}" for p in parser.params)
    return f"{parser.name}({args})"


@pytest.fixture(scope="module")
def analysed() -> dict[str, kql.QueryResult]:
    functions = asim.kusto_functions(PARSERS)
    queries: list[tuple[str, str]] = []
    for parser in PARSERS:
        queries.append((f"declared:{parser.name}", parser.declared_call()))
        queries.append((f"call:{parser.name}", parser.name))
        queries.append((f"named:{parser.name}", _named_call(parser)))
    for schema in asim.SCHEMAS.values():
        # The custom unifying parsers as a workspace holds them after the registration in docs/sentinel.md.
        queries.append((f"unifier:{schema.name}", schema.custom_unifier()))
        queries.append((f"asim-unifier:{schema.name}", f"union isfuzzy=true {schema.parameterless_parser}"))
    # Proof the check can fail: a body that names a column the table does not have.
    broken = BY_NAME["vimAuthenticationNordPass"]
    queries.append(
        ("broken", broken.declared_call().replace("tostring(metadata.reason)", "tostring(reason)"))
    )
    return {r.id: r for r in kql.check(queries, functions=functions)}


def test_the_kusto_parser_accepts_every_parser(analysed: dict[str, kql.QueryResult]) -> None:
    problems = [
        f"{r.id}: {d.code} {d.message}" for r in analysed.values() if r.id != "broken" for d in r.errors
    ]
    assert not problems, "\n".join(problems)


def test_the_kusto_check_catches_a_broken_body(analysed: dict[str, kql.QueryResult]) -> None:
    assert [d.code for d in analysed["broken"].errors] == ["KS142"]


def test_registration_lines_bind_to_the_parsers(analysed: dict[str, kql.QueryResult]) -> None:
    for schema in asim.SCHEMAS.values():
        columns = dict(analysed[f"unifier:{schema.name}"].columns or ())
        assert columns.get("EventSchema") == "string" and "EventSchemaVersion" in columns, schema.name


def schema_problems(parser: asim.Parser, columns: Sequence[tuple[str, str]]) -> list[str]:
    """Mandatory (and filled optional) fields missing or of the wrong type in an output schema."""
    have = dict(columns)
    problems = []
    for field, wanted in {**parser.schema.mandatory, **parser.schema.typed}.items():
        if field not in have:
            if field in parser.schema.mandatory:
                problems.append(f"mandatory {field} missing")
        elif have[field] != wanted:
            problems.append(f"{field} is {have[field]}, the schema says {wanted}")
    return problems


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
def test_output_schema_has_every_mandatory_field_with_its_type(
    analysed: dict[str, kql.QueryResult], parser: asim.Parser
) -> None:
    for prefix in ("call", "named"):
        columns = analysed[f"{prefix}:{parser.name}"].columns
        assert columns is not None
        assert schema_problems(parser, columns) == []


def _literal(arg: str) -> str | None:
    arg = arg.strip()
    return arg[1:-1] if len(arg) >= 2 and arg[0] == arg[-1] == '"' else None


def assigned_literals(parser: asim.Parser) -> dict[str, set[str]]:
    """Every string literal the parser text can put in a field: `F = "x"`, the value branches of
    `F = case(...)` / `F = iff(...)`, and the columns of its `datatable` mappings."""
    text = parser.query
    found: dict[str, set[str]] = {}
    for match in re.finditer(r"\b([A-Z][A-Za-z]+)\s*=\s*(case|iff)\(", text):
        body = text[match.end() : localkql._closing(text, match.end() - 1)]
        args = localkql._split_args(body)
        values = args[1::2] + [args[-1]] if match.group(2) == "case" else args[1:]
        found.setdefault(match.group(1), set()).update(v for v in map(_literal, values) if v is not None)
    for match in re.finditer(r"\b([A-Z][A-Za-z]+)\s*=\s*(\"[^\"]*\")\s*[,\n]", text):
        found.setdefault(match.group(1), set()).add(match.group(2)[1:-1])
    for match in re.finditer(r"datatable\(([^)]*)\)\s*\[", text):
        columns = [c.split(":")[0].strip() for c in match.group(1).split(",")]
        end = text.index("]", match.end())
        values = [_literal(v) for v in localkql._split_args(text[match.end() : end])]
        for i, value in enumerate(values):
            if value is not None:
                found.setdefault(columns[i % len(columns)], set()).add(value)
    return found


@pytest.mark.parametrize("parser", FILTERING, ids=lambda p: p.name)
def test_every_literal_an_enumerated_field_can_take_is_allowed(parser: asim.Parser) -> None:
    """Static: also the branches no sample row reaches (an unexpected failure reason, say)."""
    literals = assigned_literals(parser)
    problems = []
    for field, allowed in parser.schema.enumerations.items():
        for value in literals.get(field, set()):
            if value == "" and field not in parser.schema.never_empty:
                continue
            if value not in allowed:
                problems.append(f"{field} can be {value!r}")
    assert not problems, problems
    assert literals.get("EventSchemaVersion") == {parser.schema.version}
    assert literals.get("EventSchema") == {parser.schema.name}


def test_literal_check_sees_case_iff_and_datatable_values() -> None:
    literals = assigned_literals(BY_NAME["vimAuthenticationNordPass"])
    assert {"Incorrect password", "Logon violates policy", "User locked", "Other", ""} <= literals[
        "EventResultDetails"
    ]
    assert literals["EventType"] == {"Logon"}
    audit = assigned_literals(BY_NAME["vimAuditEventNordPass"])
    assert {"Set", "Create", "Delete", "Read", "Enable", "Disable", "Clear"} == audit["EventType"]
    assert "Policy Rule" in audit["ObjectType"]


def test_schema_check_can_fail(analysed: dict[str, kql.QueryResult]) -> None:
    parser = BY_NAME["vimUserManagementNordPass"]
    columns = [c for c in analysed["call:vimUserManagementNordPass"].columns or () if c[0] != "ActorUsername"]
    columns = [(n, "long" if n == "EventCount" else t) for n, t in columns]
    assert set(schema_problems(parser, columns)) == {
        "mandatory ActorUsername missing",
        "EventCount is long, the schema says int",
    }


# -- rows -------------------------------------------------------------------------------------------

M = timedelta(minutes=1)
H = timedelta(hours=1)


class Sample:
    """A tenant's last hours: background, one of every catalog pair, status and invitation
    variants, and the scripted brute force and password spray."""

    def __init__(self) -> None:
        self.now = localrun.utcnow()
        self.org = datagen.make_org(7, members=20, admins=3)
        f = datagen.EventFactory(self.org, seed=11)
        events = f.background(self.at(4 * H), self.at(40 * M), per_minute=2)
        events += f.sweep(self.at(35 * M))
        member, admin = self.org.members[3], self.org.admins[1]
        for status in ("suspended", "deleted", "active", "archived"):
            events.append(
                f.event(
                    "access",
                    "user_status_updated",
                    at=self.at(30 * M),
                    user=member,
                    initiator=admin,
                    metadata={"status": status},
                )
            )
        events.append(
            f.event(
                "invites",
                "user_invited",
                at=self.at(29 * M),
                user=member,
                initiator=admin,
                metadata={"emails": ["new.hire@" + self.org.domain]},
            )
        )
        # Failure reasons NordPass may report, so every EventResultDetails branch is exercised.
        for i, reason in enumerate(
            ("user_not_found", "user_locked", "user_suspended", "mfa_failed", "rate_limited")
        ):
            someone = self.org.members[5 + i]
            events.append(
                f.event(
                    "login",
                    "user_login_failed",
                    at=self.at(28 * M),
                    user=someone,
                    initiator=someone,
                    metadata={"reason": reason, "ip_address": "198.51.100.9", "provider": "nordpass"},
                )
            )
        self.victim = self.org.members[0]
        self.brute_force = datagen.brute_force(f, self.victim, at=self.at(20 * M), ip=ATTACKER_IP)
        self.spray_users = self.org.staff[4:16]
        self.spray = datagen.password_spray(f, self.spray_users, at=self.at(10 * M), ip=SPRAY_IP)
        events += self.brute_force.events + self.spray.events
        self.rows = localrun.rows_from_events(events)
        self.loaded = localrun.ingest(self.rows, lag=M)

    def at(self, ago: timedelta) -> int:
        return localrun.to_epoch(self.now - ago)

    def run(self, query: str) -> list[dict[str, Any]]:
        return localkql.execute(query, localrun.connect(self.loaded), PARSERS)


@pytest.fixture(scope="module")
def sample() -> Sample:
    return Sample()


@pytest.fixture(scope="module")
def outputs(sample: Sample) -> dict[str, list[dict[str, Any]]]:
    return {p.name: sample.run(p.name) for p in PARSERS}


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "real": (float, int),
    "datetime": (datetime,),
    "dynamic": (str, dict, list),
}


def row_problems(parser: asim.Parser, rows: Sequence[dict[str, Any]]) -> list[str]:
    schema = parser.schema
    problems: set[str] = set()
    for row in rows:
        problems.update(_mandatory_problems(schema, row))
        problems.update(_enumeration_problems(schema, row))
        problems.update(_constant_problems(schema, row))
    return sorted(problems)


def _mandatory_problems(schema: asim.Schema, row: dict[str, Any]) -> Iterator[str]:
    """Mandatory fields empty or of the wrong type, and conditional ones empty when due."""
    for field, kusto_type in schema.mandatory.items():
        value = row.get(field)
        if value is None or value == "":
            yield f"mandatory {field} empty ({row.get('EventOriginalType')})"
        elif not isinstance(value, _PY_TYPES[kusto_type]) or isinstance(value, bool):
            yield f"{field} holds {type(value).__name__}"
    for field, follows in schema.conditional:
        if row.get(follows) not in (None, "") and row.get(field) in (None, ""):
            yield f"{field} empty although {follows} is set ({row.get('EventOriginalType')})"


def _enumeration_problems(schema: asim.Schema, row: dict[str, Any]) -> Iterator[str]:
    for field, allowed in schema.enumerations.items():
        value = row.get(field)
        if value in (None, ""):
            if field in schema.never_empty:
                yield f"{field} empty ({row.get('EventOriginalType')})"
        elif value not in allowed:
            yield f"{field} = {value!r} is not one of the schema's values"


def _constant_problems(schema: asim.Schema, row: dict[str, Any]) -> Iterator[str]:
    """Fields every row of the schema holds the same value in."""
    if row.get("EventCount") != 1:
        yield f"EventCount {row.get('EventCount')!r}"
    if row.get("EventSchema") != schema.name or row.get("EventSchemaVersion") != schema.version:
        yield f"EventSchema/Version {row.get('EventSchema')} {row.get('EventSchemaVersion')}"
    if (row.get("EventVendor"), row.get("EventProduct"), row.get("Dvc")) != (
        asim.VENDOR,
        asim.PRODUCT,
        asim.DVC,
    ):
        yield "vendor/product/device"
    if schema is asim.AUTHENTICATION and row["EventResult"] == "Failure" and not row["EventResultDetails"]:
        yield "a failure without EventResultDetails"


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
def test_rows_fill_mandatory_fields_and_hold_only_allowed_values(
    outputs: dict[str, list[dict[str, Any]]], parser: asim.Parser
) -> None:
    rows = outputs[parser.name]
    assert rows, f"{parser.name} returned nothing"
    assert row_problems(parser, rows) == []


def test_row_check_can_fail(outputs: dict[str, list[dict[str, Any]]]) -> None:
    parser = BY_NAME["vimAuditEventNordPass"]
    row = dict(outputs[parser.name][0])
    row.update(EventType="Modify", Object="", ObjectType="", EventCount=2)
    assert row_problems(parser, [row]) == [
        "EventCount 2",
        "EventType = 'Modify' is not one of the schema's values",
        "ObjectType empty (" + str(row["EventOriginalType"]) + ")",
        "mandatory Object empty (" + str(row["EventOriginalType"]) + ")",
    ]


def test_every_mapped_catalog_pair_comes_out(outputs: dict[str, list[dict[str, Any]]]) -> None:
    """The sweep holds one event of every catalog pair: each pair a parser maps must reach its
    output (a pair mapped but filtered out by mistake would not)."""
    for parser in FILTERING:
        seen = {tuple(str(r["EventOriginalType"]).split(".", 1)) for r in outputs[parser.name]}
        assert _mapped_pairs(parser) <= seen, sorted(_mapped_pairs(parser) - seen)


def test_parameterless_parser_returns_what_the_filtering_parser_returns_unfiltered(
    outputs: dict[str, list[dict[str, Any]]],
) -> None:
    for schema in asim.SCHEMAS.values():
        unfiltered = Counter(r["EventOriginalUid"] for r in outputs[schema.filtering_parser])
        assert Counter(r["EventOriginalUid"] for r in outputs[schema.parameterless_parser]) == unfiltered


def test_user_status_and_invitations_map_to_their_event_types(
    outputs: dict[str, list[dict[str, Any]]], sample: Sample
) -> None:
    rows = outputs["ASimUserManagementNordPass"]
    status = {
        r["NewPropertyValue"]: r["EventType"]
        for r in rows
        if r["EventOriginalType"] == "access.user_status_updated"
    }
    assert {k: status[k] for k in ("suspended", "deleted", "active", "archived")} == {
        "suspended": "UserDisabled",
        "deleted": "UserDeleted",
        "active": "UserEnabled",
        "archived": "UserModified",
    }
    invited = [
        r
        for r in rows
        if r["EventOriginalType"] == "invites.user_invited" and r["TargetUsername"].startswith("new.hire@")
    ]
    assert len(invited) == 1 and invited[0]["EventType"] == "UserCreated"
    assert invited[0]["ActorUsername"] == sample.org.admins[1].email


# -- the scripted attacks as Authentication failures ------------------------------------------------


def test_brute_force_comes_out_as_authentication_failures(sample: Sample) -> None:
    rows = [r for r in sample.run("ASimAuthenticationNordPass") if r["SrcIpAddr"] == ATTACKER_IP]
    # Eight attempts, one an identical same-second retry: eight events, eight rows.
    assert len(rows) == len(sample.brute_force.events) == 8
    assert {
        (r["EventType"], r["EventResult"], r["EventResultDetails"], r["TargetUsername"]) for r in rows
    } == {("Logon", "Failure", "Incorrect password", sample.victim.email)}
    assert {r["LogonMethod"] for r in rows} == {"Username & Password"}
    assert len({r["EventOriginalUid"] for r in rows}) == 8


def test_password_spray_comes_out_as_authentication_failures(sample: Sample) -> None:
    rows = [r for r in sample.run("ASimAuthenticationNordPass") if r["SrcIpAddr"] == SPRAY_IP]
    assert {r["EventResult"] for r in rows} == {"Failure"}
    assert sorted(r["TargetUsername"] for r in rows) == sorted(p.email for p in sample.spray_users)
    # What built-in ASIM password-spray content counts: failures for many users from one address.
    assert len({r["TargetUsername"] for r in rows if r["EventResultDetails"] == "Incorrect password"}) == 12


def test_failure_reasons_map_to_result_details(outputs: dict[str, list[dict[str, Any]]]) -> None:
    details = {
        r["EventOriginalResultDetails"]: r["EventResultDetails"]
        for r in outputs["ASimAuthenticationNordPass"]
        if r["EventResult"] == "Failure"
    }
    assert details == {
        "invalid_password": "Incorrect password",
        "user_not_found": "No such user",
        "user_locked": "User locked",
        "user_suspended": "User disabled",
        "mfa_failed": "Logon violates policy",
        "rate_limited": "Other",
        "": "Incorrect password",  # lock.master_failed carries no reason: a wrong master password
    }


def test_mfa_failures_and_sso_sign_ins_are_told_apart(outputs: dict[str, list[dict[str, Any]]]) -> None:
    rows = outputs["ASimAuthenticationNordPass"]
    mfa = [r for r in rows if r["EventOriginalResultDetails"] == "mfa_failed"]
    assert mfa and {(r["EventResultDetails"], r["LogonMethod"]) for r in mfa} == {
        ("Logon violates policy", "Multi factor authentication")
    }
    sso = [r for r in rows if r["EventOriginalType"].startswith("login.") and r["LogonProtocol"] == "SSO"]
    assert sso and all(r["AdditionalFields"] and "nordpass" not in str(r["LogonMethod"]) for r in sso)
    unlocks = [r for r in rows if r["EventOriginalType"].startswith("lock.")]
    assert unlocks and {r["TargetAppName"] for r in unlocks} == {"NordPass vault"}


# -- filtering parameters ---------------------------------------------------------------------------


def _has_any(value: str, needles: Sequence[str]) -> bool:
    """Kusto `has`: the needle matches on term boundaries, case-insensitively."""
    return any(re.search(rf"(?<![^\W_]){re.escape(n)}(?![^\W_])", value or "", re.I) for n in needles)


def _prefix_any(ip: str, prefixes: Sequence[str]) -> bool:
    return any(ip == p or (p.endswith(".") and ip.startswith(p)) for p in prefixes)


Predicate = Callable[[dict[str, Any]], bool]


def filter_cases(
    sample: Sample, rows: dict[str, list[dict[str, Any]]]
) -> list[tuple[str, str, str, Predicate]]:
    """(parser, parameter, KQL value, which unfiltered rows must remain)."""
    auth = rows["vimAuthenticationNordPass"]
    times = sorted(r["TimeGenerated"] for r in auth)
    middle = times[len(times) // 2]
    literal = f"datetime({middle.isoformat()}Z)"
    victim = sample.victim.email
    admin = sample.org.admins[1].email
    cases: list[tuple[str, str, str, Predicate]] = []
    for name in ("vimAuthenticationNordPass", "vimUserManagementNordPass", "vimAuditEventNordPass"):
        cases += [
            (name, "starttime", literal, lambda r: r["TimeGenerated"] >= middle),
            (name, "endtime", literal, lambda r: r["TimeGenerated"] <= middle),
            (
                name,
                "srcipaddr_has_any_prefix",
                "dynamic(['192.0.2.'])",
                lambda r: _prefix_any(r["SrcIpAddr"], ["192.0.2."]),
            ),
            (name, "disabled", "true", lambda r: False),
        ]
    cases += [
        (
            "vimAuthenticationNordPass",
            "username_has_any",
            f"dynamic(['{victim}'])",
            lambda r: victim in (r["TargetUsername"], r["ActorUsername"]),
        ),
        (
            "vimAuthenticationNordPass",
            "targetappname_has_any",
            "dynamic(['vault'])",
            lambda r: r["TargetAppName"] == "NordPass vault",
        ),
        ("vimAuthenticationNordPass", "srchostname_has_any", "dynamic(['laptop-1'])", lambda r: False),
        ("vimAuthenticationNordPass", "eventtype_in", "dynamic(['Logoff', 'Elevate'])", lambda r: False),
        (
            "vimAuthenticationNordPass",
            "eventresultdetails_in",
            "dynamic(['Incorrect password'])",
            lambda r: r["EventResultDetails"] == "Incorrect password",
        ),
        ("vimAuthenticationNordPass", "eventresult", "'Failure'", lambda r: r["EventResult"] == "Failure"),
        (
            "vimUserManagementNordPass",
            "targetusername_has_any",
            f"dynamic(['{sample.org.members[3].email}'])",
            lambda r: r["TargetUsername"] == sample.org.members[3].email,
        ),
        (
            "vimUserManagementNordPass",
            "actorusername_has_any",
            f"dynamic(['{admin}'])",
            lambda r: r["ActorUsername"] == admin,
        ),
        (
            "vimUserManagementNordPass",
            "eventtype_in",
            "dynamic(['UserDisabled', 'UserDeleted'])",
            lambda r: r["EventType"] in ("UserDisabled", "UserDeleted"),
        ),
        (
            "vimAuditEventNordPass",
            "actorusername_has_any",
            f"dynamic(['{admin}'])",
            lambda r: r["ActorUsername"] == admin,
        ),
        (
            "vimAuditEventNordPass",
            "operation_has_any",
            "dynamic(['item_access.vault_exported'])",
            lambda r: r["Operation"] == "item_access.vault_exported",
        ),
        (
            "vimAuditEventNordPass",
            "eventtype_in",
            "dynamic(['Create', 'Delete'])",
            lambda r: r["EventType"] in ("Create", "Delete"),
        ),
        ("vimAuditEventNordPass", "eventresult", "'Failure'", lambda r: r["EventResult"] == "Failure"),
        (
            "vimAuditEventNordPass",
            "object_has_any",
            "dynamic(['recovery'])",
            lambda r: _has_any(r["Object"], ["recovery"]),
        ),
        (
            "vimAuditEventNordPass",
            "newvalue_has_any",
            "dynamic(['csv'])",
            lambda r: _has_any(r["NewValue"], ["csv"]),
        ),
    ]
    return cases


def test_every_filtering_parameter_has_a_case(
    sample: Sample, outputs: dict[str, list[dict[str, Any]]]
) -> None:
    covered = {(parser, param) for parser, param, _, _ in filter_cases(sample, outputs)}
    declared = {(p.name, param.name) for p in FILTERING for param in p.params}
    assert covered == declared


def test_each_filtering_parameter_really_filters(
    sample: Sample, outputs: dict[str, list[dict[str, Any]]]
) -> None:
    failures = []
    for parser, param, value, keep in filter_cases(sample, outputs):
        unfiltered = outputs[parser]
        expected = Counter(r["EventOriginalUid"] for r in unfiltered if keep(r))
        # A case that keeps everything or nothing proves little, unless the parameter's documented
        # effect is exactly that (a filter on a field NordPass lacks, a type it never reports).
        if 0 < len(expected) == len(unfiltered):
            failures.append(f"{parser}({param}): the case keeps every row, pick a narrower value")
        got = Counter(r["EventOriginalUid"] for r in sample.run(f"{parser}({param}={value})"))
        if got != expected:
            failures.append(
                f"{parser}({param}={value}): {sum(got.values())} rows, expected {sum(expected.values())}"
            )
    assert not failures, "\n".join(failures)


def test_username_filter_reports_the_matching_field(sample: Sample) -> None:
    rows = sample.run(f"vimAuthenticationNordPass(username_has_any=dynamic(['{sample.victim.email}']))")
    assert rows and {r["ASimMatchingUsername"] for r in rows} == {"TargetUsername"}
    assert {r["ASimMatchingUsername"] for r in sample.run("vimAuthenticationNordPass()")} == {"-"}


def test_named_arguments_bind_like_kusto() -> None:
    params = BY_NAME["vimAuthenticationNordPass"].params
    call = localkql.positional_calls(
        "vimAuthenticationNordPass(eventresult='Failure', starttime=ago(1h))",
        {"vimAuthenticationNordPass": params},
    )
    assert call == (
        "vimAuthenticationNordPass(ago(1h), datetime(null), dynamic([]), dynamic([]), dynamic([]), dynamic([]), "
        "dynamic([]), dynamic([]), 'Failure', false)"
    )
    with pytest.raises(ValueError, match="no parameter"):
        localkql.positional_calls("vimAuthenticationNordPass(nope=1)", {"vimAuthenticationNordPass": params})
