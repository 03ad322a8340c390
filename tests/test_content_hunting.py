"""Every hunting query: accepted by the Kusto analyzer, held to Sentinel's content checks, and
replayed with duckdb-kql: it finds its planted scenario and stays quiet on a benign twin.

Rows are built the way production builds them (sandbox events -> `mapping.prepare` / `to_row` ->
`localrun.ingest`, which applies Log Analytics' TimeGenerated rewrite for rows older than two
days). Queries run as written through `content.localkql`, whose only changes are documented there
(the local stand-in for `geo_info_from_ip_address()`). Time is real: scenarios are laid out
relative to now.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from content import hunting, kql, localkql, localrun, rule_constraints
from sandbox import datagen

QUERIES = hunting.by_key(hunting.load_queries())
ATTACKER_IP = "203.0.113.66"
HOME_IP = "192.0.2.10"
M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)


# -- format, Sentinel's checks and the Kusto analyzer ------------------------------------------------


def test_at_least_ten_hunting_queries_with_unique_ids() -> None:
    assert len(QUERIES) >= 10
    assert len({q.id for q in QUERIES.values()}) == len(QUERIES)


def test_sentinel_checks_refuse_a_broken_query(tmp_path: Any) -> None:
    """`load_queries` applies the rule checks: a technique outside its tactics, a bad id."""
    source = QUERIES["BulkMfaReset"].path.read_text(encoding="utf-8")
    (tmp_path / "NordPass-Broken.yaml").write_text(
        source.replace("  - T1556.006\n", "  - T1567\n").replace(QUERIES["BulkMfaReset"].id, "not-a-guid"),
        encoding="utf-8",
    )
    with pytest.raises(ValueError) as error:
        hunting.load_queries(tmp_path)
    assert "techniques-match-tactics" in str(error.value) and "[id-guid]" in str(error.value)


def test_techniques_sit_under_their_tactics() -> None:
    for query in QUERIES.values():
        for technique in query.techniques:
            tactics = rule_constraints.TECHNIQUE_TACTICS[technique.split(".")[0]]
            assert tactics & set(query.tactics), (query.key, technique)


@pytest.fixture(scope="module")
def analysed() -> dict[str, kql.QueryResult]:
    with_signin = kql.kusto_tables() + [{"name": "SigninLogs", "schema": hunting.SIGNIN_LOGS_SCHEMA}]
    queries = [(q.key, q.query) for q in QUERIES.values()]
    queries += [(f"no-signinlogs:{q.key}", q.query) for q in QUERIES.values() if "SigninLogs" in q.query]
    overrides = {key: with_signin for key, _ in queries if not key.startswith("no-signinlogs:")}
    return {r.id: r for r in kql.check(queries, overrides=overrides)}


def test_the_kusto_parser_accepts_every_hunting_query(analysed: dict[str, kql.QueryResult]) -> None:
    problems = [f"{r.id}: {d.code} {d.message}" for r in analysed.values() for d in r.errors]
    assert not problems, "\n".join(problems)
    # Without the Entra ID connector the correlation query still analyses: only the fuzzy table
    # is reported, as a warning.
    no_table = [r for key, r in analysed.items() if key.startswith("no-signinlogs:")]
    assert no_table and all({d.code for d in r.diagnostics} == {"KS205"} for r in no_table)


def test_entity_columns_exist_in_the_result(analysed: dict[str, kql.QueryResult]) -> None:
    for query in QUERIES.values():
        result = analysed[query.key]
        assert query.entity_columns, query.key
        assert query.entity_columns <= result.column_names, (
            query.key,
            query.entity_columns - result.column_names,
        )


def test_tags_carry_description_tactics_and_parent_techniques() -> None:
    tags = {t["name"]: t["value"] for t in QUERIES["MfaOrRecoveryChangeThenExport"].tags()}
    assert tags["tactics"] == "Persistence,CredentialAccess,Exfiltration"
    assert tags["techniques"] == "T1556,T1098,T1555,T1567"
    assert tags["description"].startswith("A member's sign-in factors changed")


# -- replay -------------------------------------------------------------------------------------------


@dataclass
class Lab:
    """One tenant's table at `now`; events are added with an ingestion time."""

    now: datetime = field(default_factory=localrun.utcnow)
    org: datagen.Org = field(default_factory=lambda: datagen.make_org(7, members=20, admins=3))
    loaded: list[localrun.LoadedRow] = field(default_factory=list)
    signin_logs: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.f = datagen.EventFactory(self.org, seed=7)

    def at(self, ago: timedelta) -> int:
        return localrun.to_epoch(self.now - ago)

    def add(self, events: list[dict[str, Any]], *, ingested: timedelta | None = None) -> list[dict[str, Any]]:
        """Map and store `events`, each ingested a minute after it happened (or all at `ingested` ago)."""
        rows = localrun.rows_from_events(events)
        if ingested is None:
            self.loaded += localrun.ingest(rows, lag=M)
        else:
            self.loaded += localrun.ingest(rows, at=self.now - ingested)
        return rows

    def run(self, key: str, query: str | None = None) -> list[dict[str, Any]]:
        con = localrun.connect(self.loaded)
        if self.signin_logs is None:
            localkql.drop_table(con, "SigninLogs")
        else:
            localkql.load_table(con, "SigninLogs", SIGNIN_COLUMNS, self.signin_logs)
        try:
            return localkql.execute(query or QUERIES[key].query, con)
        finally:
            localkql.drop_table(con, "SigninLogs")

    def twin(self) -> Lab:
        return Lab(now=self.now)

    def login(
        self, action: str, *, ago: timedelta, ip: str, who: datagen.Person | None = None
    ) -> dict[str, Any]:
        person = who or self.member
        meta = {"ip_address": ip, "provider": "nordpass", "platform": "web"}
        if action == "user_login_failed":
            meta["reason"] = "invalid_password"
        return self.f.event("login", action, at=self.at(ago), user=person, initiator=person, metadata=meta)

    def event(
        self,
        pair: str,
        *,
        ago: timedelta,
        who: datagen.Person | None = None,
        by: datagen.Person | None = None,
        ip: str = HOME_IP,
        **metadata: Any,
    ) -> dict[str, Any]:
        event_type, action = pair.split(".", 1)
        person = who or self.member
        return self.f.event(
            event_type,
            action,
            at=self.at(ago),
            user=person,
            initiator=by or person,
            metadata={"ip_address": ip, **metadata},
        )

    @property
    def member(self) -> datagen.Person:
        return self.org.members[0]

    @property
    def admin(self) -> datagen.Person:
        return self.org.admins[1]


SIGNIN_COLUMNS = {
    "TimeGenerated": "datetime",
    "UserPrincipalName": "string",
    "ResultType": "string",
    "IPAddress": "string",
    "AppDisplayName": "string",
    "Location": "string",
}


@pytest.fixture
def lab() -> Lab:
    return Lab()


SCENARIOS: set[str] = set()


def scenario(key: str) -> Any:
    """Marks the test that proves query `key` (test_every_hunting_query_has_a_scenario counts them)."""
    SCENARIOS.add(key)

    def mark(test: Any) -> Any:
        return test

    return mark


def _let(query: str, name: str) -> str:
    match = re.search(rf"let {name} = ([^;]+);", query)
    assert match, name
    return match.group(1)


# -- password spray and brute force over long windows ---------------------------------------------


@scenario("PasswordSprayLongWindow")
def test_low_and_slow_spray_over_days(lab: Lab) -> None:
    users = lab.org.staff[:12]
    # One attempt per member, one every nine hours: never five in an hour.
    lab.add(
        [
            lab.login("user_login_failed", ago=D * 5 - i * 9 * H, ip=ATTACKER_IP, who=p)
            for i, p in enumerate(users)
        ]
    )
    [hit] = lab.run("PasswordSprayLongWindow")
    assert (hit["IpAddress"], hit["TargetedUsers"], hit["Failures"], hit["SucceededUsers"]) == (
        ATTACKER_IP,
        12,
        12,
        0,
    )

    # One member short of min_users: quiet.
    below = lab.twin()
    below.add(
        [
            below.login("user_login_failed", ago=D * 5 - i * 9 * H, ip=ATTACKER_IP, who=p)
            for i, p in enumerate(users[:9])
        ]
    )
    assert int(_let(QUERIES["PasswordSprayLongWindow"].query, "min_users")) == 10
    assert below.run("PasswordSprayLongWindow") == []


def test_office_nat_and_single_user_guessing_are_not_a_spray(lab: Lab) -> None:
    users = lab.org.staff[:12]
    # Benign twin: a shared office address where members mistype, then sign in.
    for i, p in enumerate(users):
        lab.add(
            [
                lab.login("user_login_failed", ago=D * 3 - i * H, ip=HOME_IP, who=p),
                lab.login("user_login_successful", ago=D * 3 - i * H - M, ip=HOME_IP, who=p),
            ]
        )
    assert lab.run("PasswordSprayLongWindow") == []
    # Many tries against one member is brute force, not a spray.
    one = lab.twin()
    one.add([one.login("user_login_failed", ago=D * 2 - i * H, ip=ATTACKER_IP) for i in range(12)])
    assert one.run("PasswordSprayLongWindow") == []


@scenario("BruteForceLowAndSlow")
def test_low_and_slow_brute_force(lab: Lab) -> None:
    lab.add([lab.login("user_login_successful", ago=D * d, ip=HOME_IP) for d in range(1, 6)])
    # Three failures a day for four days from two rotating addresses, never a success from them.
    attempts = [
        lab.login("user_login_failed", ago=D * d + i * 2 * H, ip=("203.0.113.66", "203.0.113.67")[i % 2])
        for d in range(1, 5)
        for i in range(3)
    ]
    lab.add(attempts)
    [hit] = lab.run("BruteForceLowAndSlow")
    assert (hit["AccountEmail"], hit["Failures"], hit["Days"], hit["SourceIps"]) == (
        lab.member.email,
        12,
        4,
        2,
    )

    # Benign twin: the same failures from the member's own address, where they then sign in.
    twin = lab.twin()
    twin.add([twin.login("user_login_successful", ago=D * d, ip=HOME_IP) for d in range(1, 6)])
    twin.add(
        [
            twin.login("user_login_failed", ago=D * d + i * 2 * H, ip=HOME_IP)
            for d in range(1, 5)
            for i in range(3)
        ]
    )
    assert twin.run("BruteForceLowAndSlow") == []
    # A one-day burst is the hourly rule's job: quiet here.
    burst = lab.twin()
    burst.add([burst.login("user_login_failed", ago=3 * H + i * M, ip=ATTACKER_IP) for i in range(12)])
    assert burst.run("BruteForceLowAndSlow") == []


def test_brute_force_from_backfilled_history_still_counts(lab: Lab) -> None:
    """A first-run backfill lands a week at once: TimeGenerated is rewritten to the receive time,
    the event time still places each failure on its own day."""
    attempts = [
        lab.login("user_login_failed", ago=D * d + i * H, ip=ATTACKER_IP)
        for d in range(2, 6)
        for i in range(3)
    ]
    lab.add(attempts, ingested=5 * M)
    [hit] = lab.run("BruteForceLowAndSlow")
    assert hit["Days"] == 4


# -- new IP, new country --------------------------------------------------------------------------


def _history(lab: Lab, days: int = 10, ip: str = HOME_IP) -> None:
    lab.add([lab.login("user_login_successful", ago=D * d + 2 * H, ip=ip) for d in range(1, days + 1)])


@scenario("SignInFromNewIp")
def test_sign_in_from_a_new_ip(lab: Lab) -> None:
    _history(lab)
    lab.add([lab.login("user_login_successful", ago=2 * H, ip=ATTACKER_IP)])
    [hit] = lab.run("SignInFromNewIp")
    assert (hit["AccountEmail"], hit["IpAddress"], hit["HistoryDays"]) == (lab.member.email, ATTACKER_IP, 10)

    known = lab.twin()
    _history(known)
    known.add([known.login("user_login_successful", ago=2 * H, ip=HOME_IP)])
    assert known.run("SignInFromNewIp") == []
    # A brand-new member has no baseline: quiet.
    fresh = lab.twin()
    fresh.add([fresh.login("user_login_successful", ago=2 * H, ip=ATTACKER_IP)])
    assert fresh.run("SignInFromNewIp") == []


@scenario("SignInFromNewCountry")
def test_sign_in_from_a_new_country(lab: Lab) -> None:
    _history(lab)
    lab.add([lab.login("user_login_successful", ago=2 * H, ip=ATTACKER_IP)])
    [hit] = lab.run("SignInFromNewCountry")
    assert (hit["AccountEmail"], hit["Country"], hit["IpAddress"]) == (
        lab.member.email,
        "Brazil",
        ATTACKER_IP,
    )

    # Benign twin: a new address in the member's own country (a new home connection) is new to
    # the IP query but not to this one.
    moved = lab.twin()
    _history(moved)
    moved.add([moved.login("user_login_successful", ago=2 * H, ip="198.51.100.200")])
    assert moved.run("SignInFromNewCountry") == []
    assert [h["IpAddress"] for h in moved.run("SignInFromNewIp")] == ["198.51.100.200"]


# -- off-hours admin activity -----------------------------------------------------------------------


def _last(lab: Lab, hour: int, minute: int = 30) -> timedelta:
    """How long ago the latest hour:minute UTC was (within the last day)."""
    moment = lab.now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if moment > lab.now - M:
        moment -= D
    return lab.now - moment


def _weekdays_only(query: str) -> str:
    """The query with no weekend days, so a scenario does not depend on today's weekday."""
    changed = query.replace("let weekend = dynamic([0, 6]);", "let weekend = dynamic([]);")
    assert changed != query
    return changed


@scenario("OffHoursAdminActivity")
def test_admin_change_at_night_by_an_unusual_actor(lab: Lab) -> None:
    query = _weekdays_only(QUERIES["OffHoursAdminActivity"].query)
    night = _last(lab, 2)
    intruder = lab.org.members[5]
    lab.add(
        [
            lab.event(
                "roles.user_role_updated",
                ago=night,
                who=lab.member,
                by=intruder,
                role="admin",
                previous_role="member",
            ),
            lab.event("global_settings.password_policy_toggled", ago=night - 5 * M, by=intruder),
        ]
    )
    [hit] = lab.run("OffHoursAdminActivity", query)
    assert (hit["Actor"], hit["Changes"], hit["FirstLocalHour"]) == (intruder.email, 2, 2)

    # Benign twins: the same change in working hours, and an admin who works nights routinely.
    day = lab.twin()
    day.add(
        [day.event("roles.user_role_updated", ago=_last(day, 10), who=day.member, by=intruder, role="admin")]
    )
    assert day.run("OffHoursAdminActivity", query) == []
    routine = lab.twin()
    routine.add(
        [routine.event("groups.group_updated", ago=night + D * d, by=routine.admin) for d in range(1, 5)]
    )
    routine.add(
        [
            routine.event(
                "roles.user_role_updated", ago=night, who=routine.member, by=routine.admin, role="admin"
            )
        ]
    )
    assert routine.run("OffHoursAdminActivity", query) == []


def test_self_service_admin_panel_events_are_not_admin_work(lab: Lab) -> None:
    """A member accepting an invitation at night uses the Admin Panel but changes nothing."""
    lab.add(
        [
            lab.event("invites.user_invite_accepted", ago=_last(lab, 2)),
            lab.event("access.recovery_request_created", ago=_last(lab, 3)),
        ]
    )
    assert lab.run("OffHoursAdminActivity", _weekdays_only(QUERIES["OffHoursAdminActivity"].query)) == []


# -- factor change then export ----------------------------------------------------------------------


@scenario("MfaOrRecoveryChangeThenExport")
def test_recovery_and_mfa_change_then_export(lab: Lab) -> None:
    lab.add(
        [
            lab.event("recovery_code.recovery_downloaded", ago=50 * M),
            lab.event("totp.2fa_device_deleted", ago=45 * M),
        ]
    )
    [export] = lab.add([lab.event("item_access.vault_exported", ago=20 * M, items_count=420, format="csv")])
    [hit] = lab.run("MfaOrRecoveryChangeThenExport")
    assert (hit["AccountEmail"], hit["ExportEventId"], hit["MinutesFromChange"]) == (
        lab.member.email,
        export["EventId"],
        30,
    )
    assert sorted(re.findall(r"[a-z_0-9]+\.[a-z_0-9]+", str(hit["Changes"]))) == [
        "recovery_code.recovery_downloaded",
        "totp.2fa_device_deleted",
    ]


def test_export_without_a_recent_factor_change_is_quiet(lab: Lab) -> None:
    # Change two hours before (outside change_to_export), change after the export, export alone.
    lab.add(
        [
            lab.event("recovery_code.recovery_reset", ago=3 * H),
            lab.event("item_access.vault_exported", ago=50 * M),
            lab.event("totp.2fa_device_enrolled", ago=30 * M),
        ]
    )
    assert lab.run("MfaOrRecoveryChangeThenExport") == []


def test_admin_mfa_reset_counts_for_the_member(lab: Lab) -> None:
    """An admin resetting the member's MFA is a change to the member's factors."""
    lab.add(
        [
            lab.event("global_settings.mfa_reset", ago=40 * M, by=lab.admin),
            lab.event("item_access.vault_exported", ago=10 * M),
        ]
    )
    [hit] = lab.run("MfaOrRecoveryChangeThenExport")
    assert hit["AccountEmail"] == lab.member.email and lab.admin.email in str(hit["ChangedBy"])


# -- external sharing -------------------------------------------------------------------------------


def _shares(lab: Lab, n: int, recipient: str) -> list[dict[str, Any]]:
    return [
        lab.event(
            "item_share.items_shared",
            ago=30 * M - i * 20 * timedelta(seconds=1),
            item_uuid=f"item-{i}",
            recipient_email=recipient,
            permission="read",
        )
        for i in range(n)
    ]


@scenario("ExternalSharingBurst")
def test_burst_of_external_shares(lab: Lab) -> None:
    lab.add(_shares(lab, 15, "drop.box@outsider.example"))
    [hit] = lab.run("ExternalSharingBurst")
    assert (hit["AccountEmail"], hit["Items"]) == (lab.member.email, 15)
    assert "outsider.example" in str(hit["RecipientDomains"])

    colleagues = lab.twin()
    colleagues.add(_shares(colleagues, 15, "team.mate@" + colleagues.org.domain))
    assert colleagues.run("ExternalSharingBurst") == []
    few = lab.twin()
    few.add(_shares(few, 9, "drop.box@outsider.example"))
    assert few.run("ExternalSharingBurst") == []
    # A partner domain listed as internal is not outside.
    partner = QUERIES["ExternalSharingBurst"].query.replace(
        "let internal_domains = dynamic([]);", 'let internal_domains = dynamic(["outsider.example"]);'
    )
    assert lab.run("ExternalSharingBurst", partner) == []


# -- dormant accounts -------------------------------------------------------------------------------


@scenario("DormantAccountActivity")
def test_dormant_account_wakes_up(lab: Lab) -> None:
    lab.add([lab.login("user_login_successful", ago=D * d, ip=HOME_IP) for d in (50, 46, 45)])
    lab.add(
        [
            lab.login("user_login_successful", ago=3 * H, ip=ATTACKER_IP),
            lab.event("item_access.vault_exported", ago=2 * H, ip=ATTACKER_IP),
        ]
    )
    [hit] = lab.run("DormantAccountActivity")
    assert (hit["Actor"], hit["DormantDays"], hit["Events"]) == (lab.member.email, 45, 2)

    recent = lab.twin()
    recent.add([recent.login("user_login_successful", ago=D * d, ip=HOME_IP) for d in (12, 10)])
    recent.add([recent.login("user_login_successful", ago=3 * H, ip=HOME_IP)])
    assert recent.run("DormantAccountActivity") == []
    newcomer = lab.twin()
    newcomer.add([newcomer.login("user_login_successful", ago=3 * H, ip=HOME_IP)])
    assert newcomer.run("DormantAccountActivity") == []


def test_admin_action_on_a_dormant_account_is_not_its_activity(lab: Lab) -> None:
    lab.add([lab.login("user_login_successful", ago=D * 45, ip=HOME_IP)])
    lab.add([lab.event("access.user_status_updated", ago=3 * H, by=lab.admin, status="suspended")])
    hits = lab.run("DormantAccountActivity")
    assert lab.member.email not in {h["Actor"] for h in hits}


# -- NordPass and Entra ID ----------------------------------------------------------------------------


def _entra(lab: Lab, n: int, *, ago: timedelta, result: str = "50126") -> list[dict[str, Any]]:
    return [
        {
            "TimeGenerated": lab.now - ago + i * M,
            "UserPrincipalName": lab.member.email.upper(),
            "ResultType": result,
            "IPAddress": ATTACKER_IP,
            "AppDisplayName": "Office 365",
            "Location": "BR",
        }
        for i in range(n)
    ]


@scenario("FailuresInNordPassAndEntraId")
def test_same_member_fails_in_nordpass_and_entra(lab: Lab) -> None:
    lab.add([lab.login("user_login_failed", ago=40 * M - i * M, ip=ATTACKER_IP) for i in range(4)])
    lab.signin_logs = _entra(lab, 5, ago=30 * M)
    [hit] = lab.run("FailuresInNordPassAndEntraId")
    assert (hit["Upn"], hit["NordPassFailures"], hit["EntraFailures"]) == (lab.member.email, 4, 5)

    # Without the Entra ID connector the table does not exist: no error, no rows.
    lab.signin_logs = None
    assert lab.run("FailuresInNordPassAndEntraId") == []
    # Entra ID successes, or failures hours away from the NordPass ones: quiet.
    lab.signin_logs = _entra(lab, 5, ago=30 * M, result="0")
    assert lab.run("FailuresInNordPassAndEntraId") == []
    lab.signin_logs = _entra(lab, 5, ago=6 * H)
    assert lab.run("FailuresInNordPassAndEntraId") == []


# -- bulk MFA reset ----------------------------------------------------------------------------------


@scenario("BulkMfaReset")
def test_one_admin_resets_mfa_for_several_members(lab: Lab) -> None:
    members = lab.org.members[2:6]
    lab.add(
        [
            lab.event("global_settings.mfa_reset", ago=20 * M - i * M, who=p, by=lab.admin)
            for i, p in enumerate(members[:2])
        ]
        + [
            lab.event("totp.2fa_reset_in_ecp", ago=15 * M - i * M, who=p, by=lab.admin)
            for i, p in enumerate(members[2:])
        ]
    )
    [hit] = lab.run("BulkMfaReset")
    assert (hit["Admin"], hit["Members"], hit["Resets"]) == (lab.admin.email, 4, 4)

    two = lab.twin()
    two.add(
        [
            two.event("global_settings.mfa_reset", ago=20 * M - i * M, who=p, by=two.admin)
            for i, p in enumerate(members[:2])
        ]
    )
    assert two.run("BulkMfaReset") == []


def test_bulk_mfa_reset_by_an_msp_admin_names_the_members(lab: Lab) -> None:
    """On MSP events the official mapping overwrites user_email with the MSP admin; the members
    are still counted (from OriginalUserEmail)."""
    msp = lab.org.msp_admins[0]
    members = lab.org.members[2:5]
    lab.add(
        [lab.event("totp.2fa_reset_in_ecp", ago=20 * M - i * M, who=p, by=msp) for i, p in enumerate(members)]
    )
    [hit] = lab.run("BulkMfaReset")
    assert hit["Admin"] == msp.email and hit["Members"] == 3
    assert sorted(re.findall(r"[\w.]+@[\w.]+", str(hit["MemberList"]))) == sorted(p.email for p in members)


# -- secret harvesting --------------------------------------------------------------------------------


def _reads(lab: Lab, n: int, *, ago: timedelta, prefix: str) -> list[dict[str, Any]]:
    return [
        lab.event(
            "item_access.item_copied", ago=ago - i * 5 * timedelta(seconds=1), item_uuid=f"{prefix}-{i}"
        )
        for i in range(n)
    ]


@scenario("SecretHarvestingBurst")
def test_member_copies_far_more_secrets_than_usual(lab: Lab) -> None:
    for d in range(1, 8):
        lab.add(_reads(lab, 5, ago=D * d, prefix=f"usual-{d}"))
    lab.add(_reads(lab, 40, ago=20 * M, prefix="harvest"))
    [hit] = lab.run("SecretHarvestingBurst")
    assert (hit["AccountEmail"], hit["Items"], hit["BusiestBefore"]) == (lab.member.email, 40, 5)

    # Benign twin: a member whose weekly audit regularly touches 30 items an hour.
    auditor = lab.twin()
    for d in (2, 9):
        auditor.add(_reads(auditor, 30, ago=D * d, prefix=f"audit-{d}"))
    auditor.add(_reads(auditor, 40, ago=20 * M, prefix="today"))
    assert auditor.run("SecretHarvestingBurst") == []
    small = lab.twin()
    small.add(_reads(small, 20, ago=20 * M, prefix="few"))
    assert small.run("SecretHarvestingBurst") == []


def test_autofill_is_not_harvesting(lab: Lab) -> None:
    lab.add(
        [
            lab.event(
                "item_access.item_autofilled", ago=20 * M - i * timedelta(seconds=5), item_uuid=f"a-{i}"
            )
            for i in range(60)
        ]
    )
    assert lab.run("SecretHarvestingBurst") == []


def test_every_hunting_query_has_a_scenario() -> None:
    assert set(QUERIES) == SCENARIOS
