"""Every analytic rule, executed on rows, with duckdb-kql: the attack fires, its benign twin does not.

Rows are built the way production builds them: raw events from the sandbox generator
(`sandbox.datagen`), mapped by the connector's `mapping.prepare` + `mapping.to_row`, then stored the
way Log Analytics stores them (`content.localrun.ingest`: TimeGenerated older than two days becomes
the receive time).

The query text is the one in the rule YAML, with a single documented transformation that duckdb-kql
needs: it has no `ingestion_time()`, so each local row carries an explicit ingestion timestamp and
`localrun.executable_form` rewrites the call to that column. Everything else (the `let` thresholds,
`ago()`, `arg_min(...) by EventId`, joins, dynamic access) runs as written. The unmodified text is
covered by the real Kusto analyzer in test_content_kql.py.

Time is real: `ago()` uses the wall clock, so every scenario is laid out relative to `now`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from content import kql, localrun
from nordpass_connector import health
from sandbox import datagen
from tests.health_rows import AUTH_ERROR, RunLog

RULES: dict[str, dict[str, Any]] = {
    p.stem.removeprefix("NordPass-"): kql.load_rule(p) for p in kql.rule_paths()
}
ATTACKER_IP = "203.0.113.66"


def _short(value: str) -> timedelta:
    number, unit = int(value[:-1]), value[-1]
    return {"m": timedelta(minutes=number), "h": timedelta(hours=number), "d": timedelta(days=number)}[unit]


@dataclass
class Lab:
    """One tenant's table at `now`: events are added as batches with an ingestion time."""

    now: datetime = field(default_factory=localrun.utcnow)
    org: datagen.Org = field(default_factory=lambda: datagen.make_org(7, members=20, admins=3))
    loaded: list[localrun.LoadedRow] = field(default_factory=list)
    runs: RunLog = field(init=False)  # the connector's health rows (NordPassConnectorHealth_CL)

    def __post_init__(self) -> None:
        self.f = datagen.EventFactory(self.org, seed=7)
        self.runs = RunLog(self.now)

    def at(self, ago: timedelta) -> int:
        return localrun.to_epoch(self.now - ago)

    def add(
        self,
        events: list[dict[str, Any]],
        *,
        ingested: timedelta | None = None,
        lag: timedelta | None = None,
    ) -> list[dict[str, Any]]:
        """Map and store `events`; `ingested` = how long ago the batch landed, else `lag` per row."""
        rows = localrun.rows_from_events(events)
        if ingested is not None:
            self.loaded += localrun.ingest(rows, at=self.now - ingested)
        else:
            self.loaded += localrun.ingest(rows, lag=lag or timedelta(minutes=1))
        return rows

    def resend(self, rows: list[dict[str, Any]], *, ingested: timedelta) -> None:
        """The connector re-sending already delivered rows (same EventIds), e.g. after a partial failure."""
        self.loaded += localrun.ingest(rows, at=self.now - ingested)

    def background(self, start: timedelta, end: timedelta, per_minute: float = 0.2) -> None:
        self.add(self.f.background(self.at(start), self.at(end), per_minute=per_minute))

    def run(self, rule: str) -> list[dict[str, Any]]:
        return localrun.run(str(RULES[rule]["query"]), self.loaded, self.runs.rows)

    @property
    def member(self) -> datagen.Person:
        return self.org.members[0]

    @property
    def admin(self) -> datagen.Person:
        return self.org.admins[1]


@pytest.fixture
def lab() -> Lab:
    return Lab()


M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)


def test_every_rule_has_a_scenario() -> None:
    """The parametrised cases below name every rule, so a new rule without a scenario fails here."""
    covered = (
        {case.values[0] for case in SINGLE_EVENT_CASES}
        | set(THRESHOLD_RULES)
        | {
            "FailuresThenSuccessFromSameIp",
            "VaultExportAfterNewIpLogin",
            "ConnectorNotRunning",
            "ConnectorRunsFailing",
        }
    )
    assert covered == set(RULES)


# -- single-event rules: each event alerts once -------------------------------------------------


def _event(lab: Lab, spec: tuple[Any, ...], when: int) -> dict[str, Any]:
    event_type, action, actor, metadata = spec
    initiator = {"self": lab.member, "admin": lab.admin, "msp": lab.org.msp_admins[0]}[actor]
    return lab.f.event(event_type, action, at=when, user=lab.member, initiator=initiator, metadata=metadata)


# rule, attack (event_type, action, initiator, metadata), benign twin of the same shape.
SINGLE_EVENT_CASES = [
    pytest.param(
        "DeclinedInvitation",
        ("invites", "user_invite_declined", "self", None),
        ("invites", "user_invite_accepted", "self", None),
        id="declined-invitation",
    ),
    pytest.param(
        "DomainDataDetectedInBreach",
        ("breach", "domain_breached", "admin", None),
        ("breach", "breach_report_viewed", "admin", None),
        id="domain-breach",
    ),
    pytest.param(
        "DeletingItemsOfDeletedMember",
        ("item_delete", "item_reassignment_deleted", "admin", None),
        ("access", "item_reassignment_transferred", "admin", None),
        id="deleted-member-items",
    ),
    pytest.param(
        "ManualInvitationSuspensionDeletion",
        ("access", "user_status_updated", "admin", {"status": "suspended"}),
        ("access", "user_status_updated", "admin", {"status": "active"}),
        id="manual-suspension",
    ),
    pytest.param(
        "ManualInvitationSuspensionDeletion",
        ("invites", "user_invited", "admin", None),
        ("invites", "user_invite_resent", "admin", None),
        id="manual-invitation",
    ),
    pytest.param(
        "ActivityTokenRevocation",
        ("integrations", "activities_token_revoked", "admin", None),
        ("integrations", "activities_token_created", "admin", None),
        id="token-revocation",
    ),
    pytest.param(
        "UserDataDetectedInBreach",
        ("breach", "email_breached", "self", None),
        ("breach", "breach_resolved", "admin", None),
        id="user-breach",
    ),
    pytest.param(
        "VaultExport",
        ("item_access", "vault_exported", "self", None),
        ("item_access", "items_imported", "self", None),
        id="vault-export",
    ),
    pytest.param(
        "AdminMfaOrMasterPasswordChange",
        ("global_settings", "mfa_reset", "admin", None),
        ("global_settings", "global_settings_updated", "admin", None),
        id="mfa-reset",
    ),
    pytest.param(
        "AdminMfaOrMasterPasswordChange",
        ("totp", "2fa_reset_in_ecp", "msp", None),
        ("totp", "2fa_device_enrolled", "self", None),
        id="2fa-reset-by-msp",
    ),
    pytest.param(
        "AdminMfaOrMasterPasswordChange",
        ("password", "business_account_password_reset_successful", "admin", None),
        ("password", "business_account_password_reset_successful", "self", None),
        id="password-reset-by-other",
    ),
    pytest.param(
        "AdminRoleOrPolicyChange",
        ("roles", "user_role_updated", "admin", {"role": "admin", "previous_role": "member"}),
        ("user_settings", "user_settings_updated", "admin", None),
        id="role-change",
    ),
    pytest.param(
        "AdminRoleOrPolicyChange",
        ("global_settings", "password_policy_toggled", "admin", None),
        ("global_settings", "global_settings_customization_deleted", "admin", None),
        id="password-policy",
    ),
    pytest.param(
        "AdminRoleOrPolicyChange",
        ("role_settings", "role_settings_cleared", "admin", None),
        ("groups", "group_updated", "admin", None),
        id="role-settings",
    ),
    pytest.param(
        "NewScimOrOAuthCredentials",
        ("scim_credentials", "scim_credentials_created", "admin", None),
        ("scim_credentials", "scim_credentials_deleted", "admin", None),
        id="scim-credentials",
    ),
    pytest.param(
        "NewScimOrOAuthCredentials",
        ("oauth_credentials", "oauth_credentials_created", "admin", None),
        ("oauth_credentials", "oauth_credentials_deleted", "admin", None),
        id="oauth-credentials",
    ),
    pytest.param(
        "NewScimOrOAuthCredentials",
        ("oauth_domain", "oauth_domain_created", "admin", None),
        ("oauth_domain", "oauth_domain_verified", "admin", None),
        id="oauth-domain",
    ),
]


@pytest.mark.parametrize(("rule", "attack", "benign"), SINGLE_EVENT_CASES)
def test_single_event_rule(lab: Lab, rule: str, attack: tuple[Any, ...], benign: tuple[Any, ...]) -> None:
    lab.background(3 * H, 2 * H)
    [attack_row] = lab.add([_event(lab, attack, lab.at(3 * M))])
    lab.add([_event(lab, benign, lab.at(4 * M))])
    alerts = lab.run(rule)
    assert [a["EventId"] for a in alerts] == [attack_row["EventId"]]
    alert = alerts[0]
    expected_subject = lab.member.email
    assert alert["AccountEmail"] == expected_subject
    assert (alert["AccountName"], alert["AccountUPNSuffix"]) == tuple(expected_subject.split("@"))
    if "ActorEmail" in alert:
        actor = _event(lab, attack, 0)["initiator"]
        assert alert["ActorEmail"] == actor

    # The benign twin alone stays silent.
    twin = Lab(now=lab.now)
    twin.add([_event(twin, benign, twin.at(3 * M))])
    assert twin.run(rule) == []


@pytest.mark.parametrize(("rule", "attack", "benign"), SINGLE_EVENT_CASES[:1] + SINGLE_EVENT_CASES[7:8])
def test_single_event_rule_judges_each_row_once(
    lab: Lab, rule: str, attack: tuple[Any, ...], benign: tuple[Any, ...]
) -> None:
    frequency = _short(RULES[rule]["queryFrequency"])
    period = _short(RULES[rule]["queryPeriod"])
    # Already judged by the previous run (ingested before it): no second alert.
    judged = lab.add([_event(lab, attack, lab.at(frequency + 5 * M))], ingested=frequency + 2 * M)
    assert lab.run(rule) == []
    # A re-sent copy of it (same EventId) arriving now is still the old event: no phantom alert.
    lab.resend(judged, ingested=M)
    assert lab.run(rule) == []
    # A late event (older than one frequency, inside the period) that arrives now alerts once,
    # even when it arrives twice.
    late = lab.add([_event(lab, attack, lab.at(period - 10 * M))], ingested=2 * M)
    lab.resend(late, ingested=M)
    assert [a["EventId"] for a in lab.run(rule)] == [late[0]["EventId"]]


# -- threshold rules: boundaries, duplicates, one alert per crossing ----------------------------


def _failures(
    lab: Lab, n: int, *, start: timedelta, user: datagen.Person | None = None
) -> list[dict[str, Any]]:
    person = user or lab.member
    meta = {"ip_address": ATTACKER_IP, "provider": "nordpass", "reason": "invalid_password"}
    return [
        lab.f.event(
            "login",
            "user_login_failed",
            at=lab.at(start) + 20 * i,
            user=person,
            initiator=person,
            metadata=meta,
        )
        for i in range(n)
    ]


def _deletions(lab: Lab, sizes: list[int], *, start: timedelta) -> list[dict[str, Any]]:
    return [
        lab.f.event(
            "item_delete",
            "items_deleted",
            at=lab.at(start) + 30 * i,
            user=lab.member,
            initiator=lab.member,
            metadata={"items": lab.f._items(size)},
        )
        for i, size in enumerate(sizes)
    ]


def _spray(lab: Lab, users: int, *, start: timedelta) -> list[dict[str, Any]]:
    meta = {"ip_address": ATTACKER_IP, "provider": "nordpass", "reason": "invalid_password"}
    return [
        lab.f.event(
            "login", "user_login_failed", at=lab.at(start) + 5 * i, user=p, initiator=p, metadata=meta
        )
        for i, p in enumerate(lab.org.staff[:users])
    ]


# rule -> (threshold from the query's `let`, builder of n units, result column holding the measure)
THRESHOLD_RULES = {
    "UserFailsAuthentication": (
        "failure_threshold",
        lambda lab, n: _failures(lab, n, start=20 * M),
        "Failures",
    ),
    "UserDeletesItemsInBulk": (
        "min_items",
        lambda lab, n: _deletions(lab, [3] * (n // 3) + ([n % 3] if n % 3 else []), start=20 * M),
        "ItemsDeleted",
    ),
    "PasswordSpray": ("min_users", lambda lab, n: _spray(lab, n, start=20 * M), "TargetedUsers"),
}


def _threshold(rule: str) -> int:
    name = THRESHOLD_RULES[rule][0]
    match = re.search(rf"let {name} = (\d+);", str(RULES[rule]["query"]))
    assert match, f"{rule} has no `let {name}`"
    return int(match.group(1))


@pytest.mark.parametrize("rule", list(THRESHOLD_RULES))
def test_threshold_exactly_at_fires_and_one_below_does_not(rule: str) -> None:
    threshold = _threshold(rule)
    build, column = THRESHOLD_RULES[rule][1], THRESHOLD_RULES[rule][2]
    # One batch arriving in this run (ingested two minutes ago).
    at = Lab()
    at.add(build(at, threshold), ingested=2 * M)
    alerts = at.run(rule)
    assert len(alerts) == 1 and alerts[0][column] == threshold

    below = Lab(now=at.now)
    below.add(build(below, threshold - 1), ingested=2 * M)
    assert below.run(rule) == []


@pytest.mark.parametrize("rule", list(THRESHOLD_RULES))
def test_threshold_duplicates_do_not_double_count(rule: str) -> None:
    lab = Lab()
    build = THRESHOLD_RULES[rule][1]
    rows = lab.add(build(lab, _threshold(rule) - 1), ingested=2 * M)
    # Every row delivered a second time (same EventIds): still one below the threshold.
    lab.resend(rows, ingested=30 * timedelta(seconds=1))
    assert lab.run(rule) == []


@pytest.mark.parametrize("rule", list(THRESHOLD_RULES))
def test_threshold_alerts_once_per_crossing(rule: str) -> None:
    """Evidence that crossed the threshold in an earlier run does not re-alert on later runs, even
    when more of the same arrives (the official rule re-alerted every 5 minutes for a day)."""
    lab = Lab()
    build = THRESHOLD_RULES[rule][1]
    frequency = _short(RULES[rule]["queryFrequency"])
    lab.add(build(lab, _threshold(rule) + 1), ingested=frequency + 2 * M)
    assert lab.run(rule) == []


def test_brute_force_scenario_from_datagen(lab: Lab) -> None:
    lab.background(3 * H, 2 * H)
    incident = datagen.brute_force(lab.f, lab.member, at=lab.at(10 * M), ip=ATTACKER_IP, attempts=8)
    lab.add(incident.events)
    [alert] = lab.run("UserFailsAuthentication")
    # The generator's identical same-second retry is a real second attempt (occurrence -1), so 8.
    assert (alert["AccountEmail"], alert["IpAddress"], alert["Failures"]) == (
        lab.member.email,
        ATTACKER_IP,
        8,
    )
    # A failure-heavy but ordinary user (one below the threshold, spread over the window) is silent.
    other = Lab(now=lab.now)
    other.add(_failures(other, _threshold("UserFailsAuthentication") - 1, start=50 * M))
    assert other.run("UserFailsAuthentication") == []


def test_bulk_deletion_scenario_from_datagen(lab: Lab) -> None:
    incident = datagen.bulk_deletion(lab.f, lab.member, at=lab.at(10 * M), items=25)
    lab.add(incident.events)
    [alert] = lab.run("UserDeletesItemsInBulk")
    assert (alert["AccountEmail"], alert["ItemsDeleted"]) == (lab.member.email, 25)


def test_password_spray_scenario_from_datagen(lab: Lab) -> None:
    lab.background(3 * H, 2 * H)
    users = lab.org.staff[2:14]
    lab.add(datagen.password_spray(lab.f, users, at=lab.at(10 * M), ip=ATTACKER_IP).events)
    [alert] = lab.run("PasswordSpray")
    assert (alert["IpAddress"], alert["TargetedUsers"]) == (ATTACKER_IP, 12)
    # Benign twin: one user failing many times from that IP is brute force, not a spray.
    twin = Lab(now=lab.now)
    twin.add(datagen.brute_force(twin.f, twin.member, at=twin.at(10 * M), ip=ATTACKER_IP, attempts=12).events)
    assert twin.run("PasswordSpray") == []


def test_password_spray_trusted_ip_is_ignored(lab: Lab) -> None:
    lab.add(_spray(lab, 8, start=10 * M))
    query = str(RULES["PasswordSpray"]["query"]).replace(
        "let trusted_ips = dynamic([]);", f'let trusted_ips = dynamic(["{ATTACKER_IP}"]);'
    )
    assert query != RULES["PasswordSpray"]["query"]
    assert localrun.run(query, lab.loaded) == []


# -- correlation rules --------------------------------------------------------------------------


def test_failures_then_success_fires(lab: Lab) -> None:
    lab.background(3 * H, 2 * H)
    incident = datagen.failures_then_success(lab.f, lab.member, at=lab.at(15 * M), ip=ATTACKER_IP)
    lab.add(incident.events)
    [alert] = lab.run("FailuresThenSuccessFromSameIp")
    assert (alert["AccountEmail"], alert["IpAddress"], alert["FailuresBefore"]) == (
        lab.member.email,
        ATTACKER_IP,
        5,
    )


def _login(
    lab: Lab, action: str, *, ago: timedelta, ip: str, user: datagen.Person | None = None
) -> dict[str, Any]:
    person = user or lab.member
    return lab.f.event(
        "login", action, at=lab.at(ago), user=person, initiator=person, metadata={"ip_address": ip}
    )


def test_failures_then_success_boundaries(lab: Lab) -> None:
    rule = "FailuresThenSuccessFromSameIp"
    match = re.search(r"let min_failures = (\d+);", str(RULES[rule]["query"]))
    assert match
    minimum = int(match.group(1))
    # Exactly the minimum before the success: fires.
    lab.add(
        _failures(lab, minimum, start=30 * M)
        + [_login(lab, "user_login_successful", ago=5 * M, ip=ATTACKER_IP)]
    )
    assert len(lab.run(rule)) == 1

    # One below, made up to the minimum by a re-sent duplicate: silent.
    dup = Lab(now=lab.now)
    rows = dup.add(_failures(dup, minimum - 1, start=30 * M))
    dup.resend(rows[:1], ingested=2 * M)
    dup.add([_login(dup, "user_login_successful", ago=5 * M, ip=ATTACKER_IP)])
    assert dup.run(rule) == []

    # Benign twins: the member succeeds from their own address after typos elsewhere, or the
    # failures come after the success.
    other_ip = Lab(now=lab.now)
    other_ip.add(
        _failures(other_ip, 5, start=30 * M)
        + [_login(other_ip, "user_login_successful", ago=5 * M, ip="192.0.2.10")]
    )
    assert other_ip.run(rule) == []
    after = Lab(now=lab.now)
    after.add(
        [
            _login(after, "user_login_successful", ago=40 * M, ip=ATTACKER_IP),
            *_failures(after, 5, start=30 * M),
        ]
    )
    assert after.run(rule) == []


def _history(lab: Lab, *, days: int, ip: str) -> None:
    """A member's daily sign-ins from their usual address over the past `days` days."""
    lab.add([_login(lab, "user_login_successful", ago=d * D + 2 * H, ip=ip) for d in range(1, days + 1)])


def _export(lab: Lab, *, ago: timedelta) -> dict[str, Any]:
    return lab.f.event("item_access", "vault_exported", at=lab.at(ago), user=lab.member, initiator=lab.member)


def test_export_after_new_ip_login_fires(lab: Lab) -> None:
    _history(lab, days=10, ip="192.0.2.10")
    lab.add([_login(lab, "user_login_successful", ago=60 * M, ip=ATTACKER_IP)])
    [export] = lab.add([_export(lab, ago=20 * M)], ingested=2 * M)
    [alert] = lab.run("VaultExportAfterNewIpLogin")
    assert (alert["AccountEmail"], alert["IpAddress"], alert["ExportEventId"]) == (
        lab.member.email,
        ATTACKER_IP,
        export["EventId"],
    )


def test_export_after_known_ip_or_old_new_ip_is_silent(lab: Lab) -> None:
    _history(lab, days=10, ip="192.0.2.10")
    # The usual address today, then an export: the plain vault-export rule fires, this one doesn't.
    lab.add([_login(lab, "user_login_successful", ago=60 * M, ip="192.0.2.10")])
    lab.add([_export(lab, ago=20 * M)], ingested=2 * M)
    assert lab.run("VaultExportAfterNewIpLogin") == []
    assert len(lab.run("VaultExport")) == 1

    # A new address first seen more than login_to_export (4 h) before the export: silent.
    stale = Lab(now=lab.now)
    _history(stale, days=10, ip="192.0.2.10")
    stale.add([_login(stale, "user_login_successful", ago=5 * H, ip=ATTACKER_IP)])
    stale.add([_export(stale, ago=20 * M)])
    assert stale.run("VaultExportAfterNewIpLogin") == []


def test_export_after_new_ip_seen_in_backfill_history_is_silent(lab: Lab) -> None:
    """History older than two days arrives with TimeGenerated = receive time; it still counts as
    history because the rule uses EventTime, so the known address is not 'new'."""
    lab.add(
        [_login(lab, "user_login_successful", ago=d * D, ip=ATTACKER_IP) for d in (5, 6)],
        ingested=30 * M,
    )
    lab.add([_login(lab, "user_login_successful", ago=60 * M, ip=ATTACKER_IP)])
    lab.add([_export(lab, ago=20 * M)], ingested=2 * M)
    assert lab.run("VaultExportAfterNewIpLogin") == []


# -- connector health ------------------------------------------------------------------------------
# Health rows are the connector's own (see tests/health_rows.py), one per simulated run.


def test_connector_not_running_fires_when_runs_stop(lab: Lab) -> None:
    lab.runs.every_minute(6 * H, 2 * H, sent=3)
    lab.background(6 * H, 2 * H, per_minute=0.5)
    [alert] = lab.run("ConnectorNotRunning")
    assert (alert["CloudApplicationName"], alert["Instance"], alert["LastOutcome"]) == (
        "NordPass",
        "default",
        "ok",
    )
    assert alert["MinutesSinceLastRun"] >= 120 and alert["RunsInPeriod"] == 241


def test_connector_not_running_fires_without_any_health_row(lab: Lab) -> None:
    """Never ran (or silent for the whole period): still one alert, even while old events sit in
    the table."""
    lab.background(6 * H, 5 * H)
    [alert] = lab.run("ConnectorNotRunning")
    assert (alert["Instance"], alert["LastRun"], alert["RunsInPeriod"]) == ("(none)", None, 0)


def test_a_quiet_organisation_is_not_a_broken_connector(lab: Lab) -> None:
    """Hours without a single NordPass event, but every run reported: nothing fires. (The old
    events-only rule alerted here after 30 minutes.)"""
    lab.runs.every_minute(6 * H, 1 * M)
    assert lab.loaded == []
    assert lab.run("ConnectorNotRunning") == []
    assert lab.run("ConnectorRunsFailing") == []


def test_connector_not_running_boundary_and_per_instance(lab: Lab) -> None:
    match = re.search(r"let max_silence = (\d+[mhd]);", str(RULES["ConnectorNotRunning"]["query"]))
    assert match
    silence = _short(match.group(1))
    lab.runs.every_minute(2 * H, silence - M, instance="eu")
    assert lab.run("ConnectorNotRunning") == []
    late = Lab(now=lab.now)
    late.runs.every_minute(2 * H, silence + M, instance="eu")
    assert [a["Instance"] for a in late.run("ConnectorNotRunning")] == ["eu"]
    # Two connectors in one workspace: only the silent one is named.
    late.runs.every_minute(2 * H, M, instance="us")
    assert [a["Instance"] for a in late.run("ConnectorNotRunning")] == ["eu"]


def test_runs_failing_fires_with_the_error_class_and_message(lab: Lab) -> None:
    lab.runs.every_minute(20 * M, 6 * M, sent=5)
    lab.runs.every_minute(5 * M, 3 * M, "failed")
    [alert] = lab.run("ConnectorRunsFailing")
    assert (alert["ErrorClass"], alert["ErrorMessage"]) == ("SourceAuthError", AUTH_ERROR)
    assert "create a new one in the Admin Panel" in alert["ErrorMessage"]
    assert (alert["FailedInARow"], alert["Failed"], alert["Runs"]) == (3, 3, 18)
    assert alert["ConsecutiveFailures"] == 3
    assert alert["LastSuccessTime"] == lab.now.replace(microsecond=0) - 6 * M
    assert alert["FirstFailure"] == lab.now.replace(microsecond=0) - 5 * M


def test_runs_failing_silent_below_the_streak_and_after_recovery(lab: Lab) -> None:
    lab.runs.every_minute(20 * M, 6 * M)
    lab.runs.every_minute(5 * M, 4 * M, "failed")  # two in a row: one below
    assert lab.run("ConnectorRunsFailing") == []
    lab.runs.run(3 * M, "failed")
    assert len(lab.run("ConnectorRunsFailing")) == 1
    recovered = Lab(now=lab.now)
    recovered.runs.every_minute(20 * M, 6 * M)
    recovered.runs.every_minute(5 * M, 3 * M, "failed")
    recovered.runs.run(2 * M, "ok")  # the streak ended with a success: silent
    assert recovered.run("ConnectorRunsFailing") == []


def test_runs_that_stood_aside_are_neither_failures_nor_successes(lab: Lab) -> None:
    """A run that found another one holding the checkpoint (busy, conflict) says nothing about the
    connector: it neither counts as a failure nor ends a failure streak."""
    lab.runs.every_minute(20 * M, 8 * M)
    for ago, outcome in ((7, "failed"), (6, "conflict"), (5, "busy"), (4, "failed"), (3, "busy")):
        lab.runs.run(ago * M, outcome)
    assert lab.run("ConnectorRunsFailing") == []  # only two failures in a row
    lab.runs.run(2 * M, "crashed")  # a crash is a failure
    [alert] = lab.run("ConnectorRunsFailing")
    assert (alert["FailedInARow"], alert["ErrorClass"]) == (3, "KeyError")
    assert alert["ErrorMessage"] == health.CRASH_MESSAGE
    assert sorted(json.loads(alert["ErrorClasses"])) == ["KeyError", "SourceAuthError"]


def test_runs_failing_catches_a_flapping_connector(lab: Lab) -> None:
    for i in range(12):
        lab.runs.run((24 - 2 * i) * M, "failed")
        lab.runs.run((23 - 2 * i) * M, "ok")
    [alert] = lab.run("ConnectorRunsFailing")
    assert (alert["FailedInARow"], alert["Failed"], alert["Runs"]) == (0, 12, 24)
    # The same failures among many more successes: silent.
    mostly_ok = Lab(now=lab.now)
    mostly_ok.runs.every_minute(29 * M, M)
    for ago in range(2, 28, 4):
        mostly_ok.runs.run(ago * M + 30 * timedelta(seconds=1), "failed")
    assert mostly_ok.run("ConnectorRunsFailing") == []


# -- first-run backfill -------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _strip_event_time_guard(query: str) -> str:
    return re.sub(r"\| where EventTime >= ago\(\w+\)\n", "", query)


def test_backfill_of_week_old_attacks_does_not_alert_but_fresh_attack_does(lab: Lab) -> None:
    """The first run loads 7 days at once. Rows older than two days get TimeGenerated = now from the
    platform, so only the EventTime guard keeps week-old attacks quiet; a fresh export in the same
    load must still alert."""
    f = lab.f
    events = f.background(lab.at(7 * D), lab.at(3 * H), per_minute=0.05)
    old_incidents = datagen.scripted_incidents(f, start=lab.at(7 * D), end=lab.at(3 * D))
    for incident in old_incidents:
        events += incident.events
    exporter = lab.org.staff[5]
    fresh = f.event("item_access", "vault_exported", at=lab.at(4 * M), user=exporter, initiator=exporter)
    events.append(fresh)
    rows = lab.add(events, ingested=M)  # one batch, all received a minute ago
    assert sum(1 for r in lab.loaded if r.row["TimeGenerated"] == lab.now - M) > 100  # rewritten rows
    lab.runs.every_minute(3 * M, M, sent=len(rows))  # the connector's runs, reporting as it works

    con = localrun.connect(lab.loaded, lab.runs.rows)  # one load, every rule
    fired = {rule: localrun.execute(str(RULES[rule]["query"]), con) for rule in RULES}
    fired = {rule: alerts for rule, alerts in fired.items() if alerts}
    assert set(fired) == {"VaultExport"}, {k: len(v) for k, v in fired.items()}
    assert [a["EventId"] for a in fired["VaultExport"]] == [rows[-1]["EventId"]]

    # Control: without the EventTime guard the same load alerts on the week-old export too, so the
    # guard (not an accident of the data) is what keeps the backfill quiet.
    unguarded = localrun.execute(_strip_event_time_guard(str(RULES["VaultExport"]["query"])), con)
    old_exports = {
        r["EventId"]
        for r in rows[:-1]
        if r["action"] == "vault_exported" and r["EventTime"] < iso(lab.now - 2 * D)
    }
    assert old_exports
    assert {a["EventId"] for a in unguarded} == old_exports | {rows[-1]["EventId"]}


def test_rules_files_exist_for_every_scenario_name() -> None:
    for name in RULES:
        assert (Path(kql.RULES_DIR) / f"NordPass-{name}.yaml").exists()
