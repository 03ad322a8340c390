"""The sandbox event generator: deterministic, catalog-complete, and shaped like the API's events."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from nordpass_connector import mapping
from sandbox import catalog
from sandbox.datagen import (
    EventFactory,
    Org,
    breach_finding,
    brute_force,
    bulk_deletion,
    failures_then_success,
    make_org,
    password_spray,
    scripted_incidents,
    token_revocation,
    vault_export,
)
from tests.row_models import NordPassEvent

T0 = 1_738_848_413  # a plausible Unix-seconds value (Feb 2025), as in the official fixtures
DAY = 86_400


def _blobs(events: list[dict]) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


# -- catalog --------------------------------------------------------------------------------


def test_catalog_has_the_145_documented_pairs_grouped_by_area() -> None:
    assert len(catalog.PAIRS) == 145
    assert len(catalog.PAIR_SET) == 145, "a pair is listed twice"
    counts = Counter(area for area, _, _ in catalog.ENTRIES)
    assert counts == catalog.EXPECTED_TOTALS == {"admin": 83, "vault": 44, "logins": 18}
    # Actions shared by several types must be present under each of them.
    for pair in [
        ("global_settings", "global_settings_updated"),
        ("totp", "global_settings_updated"),
        ("item_access", "item_viewed"),
        ("sharing_hub", "item_viewed"),
        ("item_access", "2fa_item_accessed"),
        ("totp", "2fa_item_accessed"),
        ("role_settings", "password_policy_updated"),
        ("global_settings", "password_policy_updated"),
    ]:
        assert pair in catalog.PAIR_SET
    assert catalog.AREA_OF[("item_delete", "item_reassignment_deleted")] == "admin"
    assert catalog.AREA_OF[("item_delete", "items_deleted")] == "vault"
    assert len(catalog.pairs_in("logins")) == 18


# -- organisation -----------------------------------------------------------------------------


def test_make_org_shape_and_roles() -> None:
    org = make_org(3, members=12, admins=2, msp_admins=2)
    assert (len(org.members), len(org.admins), len(org.msp_admins)) == (12, 2, 2)
    assert [p.role for p in org.admins] == ["owner", "admin"]
    assert {p.role for p in org.members} == {"member"}
    assert {p.role for p in org.msp_admins} == {"msp_admin"}
    assert len(org.everyone) == 16
    assert len({p.uuid for p in org.everyone}) == 16
    assert len({p.email for p in org.everyone}) == 16
    assert all(p.email.endswith("@" + org.domain) for p in [*org.members, *org.admins])
    assert all(not p.email.endswith("@" + org.domain) for p in org.msp_admins)
    assert org.domain.endswith(".example")


def test_make_org_is_deterministic_per_seed() -> None:
    assert make_org(11) == make_org(11)
    assert make_org(11) != make_org(12)
    with pytest.raises(ValueError):
        make_org(1, admins=0)


# -- single events ----------------------------------------------------------------------------


def test_every_catalog_pair_builds_an_api_shaped_event(event_factory: EventFactory, org: Org) -> None:
    events = event_factory.sweep(T0)
    assert [(e["type"], e["action"]) for e in events] == list(catalog.PAIRS)
    for event in events:
        assert list(event) == [
            "type",
            "action",
            "timestamp",
            "organization_uuid",
            "user",
            "initiator",
            "metadata",
        ]
        assert event["timestamp"] == T0 and type(event["timestamp"]) is int
        assert event["organization_uuid"] == org.organization_uuid
        assert set(event["user"]) == {"uuid", "email"}
        assert isinstance(event["initiator"], str) and "@" in event["initiator"]
        assert isinstance(event["metadata"], dict) and event["metadata"]["platform"]
        NordPassEvent.model_validate(event)
        assert isinstance(mapping.prepare(event), mapping.PreparedEvent)


def test_default_metadata_carries_the_fields_public_content_reads(
    event_factory: EventFactory, org: Org
) -> None:
    f = event_factory
    failed = f.event("login", "user_login_failed", at=T0)
    assert failed["metadata"]["ip_address"].count(".") == 3
    assert failed["metadata"]["provider"] in {"nordpass", "azure_ad", "google", "okta"}
    deleted = f.event("item_delete", "items_deleted", at=T0)
    assert isinstance(deleted["metadata"]["items"], list) and deleted["metadata"]["items"]
    status = f.event("access", "user_status_updated", at=T0)
    assert status["metadata"]["status"] in {"suspended", "active", "deleted"}
    invited = f.event("invites", "user_invited", at=T0)
    assert invited["metadata"]["emails"] and all(
        e.endswith(org.domain) for e in invited["metadata"]["emails"]
    )
    # Admin changes are initiated by an admin, about someone else.
    assert invited["initiator"] in {p.email for p in [*org.admins, *org.msp_admins]}


def test_msp_initiator_adds_the_msp_block_the_official_mapper_reads(
    event_factory: EventFactory, org: Org
) -> None:
    msp = org.msp_admins[0]
    subject = org.members[0]
    event = event_factory.event("invites", "user_invited", at=T0, user=subject, initiator=msp)
    assert event["initiator"] == msp.email
    assert event["metadata"]["msp"] == {"user_uuid": msp.uuid, "user_email": msp.email, "user_role": "admin"}
    row = mapping.to_row(mapping.prepare(event), 0)  # type: ignore[arg-type]
    assert (row["user_uuid"], row["OriginalUserUuid"]) == (msp.uuid, subject.uuid)
    plain = event_factory.event("invites", "user_invited", at=T0, initiator=org.admins[0])
    assert "msp" not in plain["metadata"]


def test_explicit_metadata_overrides_defaults_and_string_initiator_is_kept(
    event_factory: EventFactory,
) -> None:
    event = event_factory.event(
        "login",
        "user_login_failed",
        at=T0,
        initiator="system",
        metadata={"ip_address": "203.0.113.9", "x": None},
    )
    assert event["initiator"] == "system"
    assert event["metadata"]["ip_address"] == "203.0.113.9"
    assert event["metadata"]["x"] is None
    assert "provider" in event["metadata"]  # defaults survive the merge


def test_unknown_pairs_are_allowed(event_factory: EventFactory) -> None:
    event = event_factory.event("brand_new_type", "brand_new_action", at=T0)
    assert (event["type"], event["action"]) == ("brand_new_type", "brand_new_action")


# -- background activity ----------------------------------------------------------------------


def test_background_is_deterministic_for_a_seed() -> None:
    a = EventFactory(make_org(5), seed=5).background(T0, T0 + 3600, per_minute=30)
    b = EventFactory(make_org(5), seed=5).background(T0, T0 + 3600, per_minute=30)
    c = EventFactory(make_org(5), seed=6).background(T0, T0 + 3600, per_minute=30)
    assert _blobs(a) == _blobs(b)
    assert _blobs(a) != _blobs(c)


@pytest.fixture(scope="module")
def day_of_events() -> list[dict]:
    return EventFactory(make_org(7), seed=7).background(T0, T0 + DAY, per_minute=20)


def test_background_rate_range_order_and_weights(day_of_events: list[dict]) -> None:
    events = day_of_events
    base = 20 * 24 * 60
    assert base <= len(events) <= base * 1.02  # plus a few verbatim repeats
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert min(stamps) >= T0 and max(stamps) < T0 + DAY
    pairs = Counter((e["type"], e["action"]) for e in events)
    assert set(pairs) == catalog.PAIR_SET, "a day at 20/min covers the whole catalog"
    admin = [n for p, n in pairs.items() if catalog.AREA_OF[p] == "admin"]
    assert pairs[("item_access", "item_autofilled")] > 50 * max(admin)
    assert sum(admin) < 0.05 * len(events)


def test_background_can_exclude_pairs(event_factory: EventFactory) -> None:
    quiet = {("item_access", "vault_exported"), ("item_access", "item_autofilled")}
    events = event_factory.background(T0, T0 + 6 * 3600, per_minute=5, exclude=quiet)
    pairs = {(e["type"], e["action"]) for e in events}
    assert not pairs & quiet
    assert len(events) >= 5 * 6 * 60


def test_background_contains_identical_same_second_repeats(
    day_of_events: list[dict], event_factory: EventFactory
) -> None:
    events = day_of_events
    blobs = Counter(_blobs(events))
    repeats = [b for b, n in blobs.items() if n > 1]
    assert repeats, "background must exercise multiset dedup"
    assert len(repeats) < 0.02 * len(events)
    assert event_factory.background(T0, T0, per_minute=20) == []


# -- incidents --------------------------------------------------------------------------------


def test_brute_force_is_one_user_one_ip_within_minutes_with_an_identical_pair(
    event_factory: EventFactory, org: Org
) -> None:
    user = org.members[3]
    incident = brute_force(event_factory, user, at=T0, ip="203.0.113.50", attempts=8)
    events = incident.events
    assert incident.name == "brute_force" and len(events) == 8
    assert {(e["type"], e["action"]) for e in events} == {("login", "user_login_failed")}
    assert {e["user"]["uuid"] for e in events} == {user.uuid}
    assert {e["metadata"]["ip_address"] for e in events} == {"203.0.113.50"}
    assert events[-1]["timestamp"] - events[0]["timestamp"] <= 300
    assert max(Counter(_blobs(events)).values()) == 2


def test_password_spray_needs_ten_users_and_uses_one_ip(event_factory: EventFactory, org: Org) -> None:
    users = org.members[:12]
    events = password_spray(event_factory, users, at=T0, ip="203.0.113.60").events
    assert len({e["user"]["uuid"] for e in events}) == 12
    assert all(e["action"] == "user_login_failed" for e in events)
    assert {e["metadata"]["ip_address"] for e in events} == {"203.0.113.60"}
    with pytest.raises(ValueError):
        password_spray(event_factory, org.members[:9], at=T0, ip="203.0.113.60")


def test_failures_then_success_ends_with_a_success(event_factory: EventFactory, org: Org) -> None:
    events = failures_then_success(event_factory, org.members[0], at=T0, ip="203.0.113.7").events
    actions = [e["action"] for e in events]
    assert actions[-1] == "user_login_successful"
    assert actions[:-1] and set(actions[:-1]) == {"user_login_failed"}
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)


def test_bulk_deletion_items_sum(event_factory: EventFactory, org: Org) -> None:
    events = bulk_deletion(event_factory, org.members[1], at=T0, items=25).events
    assert {(e["type"], e["action"]) for e in events} == {("item_delete", "items_deleted")}
    assert sum(len(e["metadata"]["items"]) for e in events) >= 25
    assert events[-1]["timestamp"] - T0 < 600


def test_single_event_incidents(event_factory: EventFactory, org: Org) -> None:
    assert [e["action"] for e in vault_export(event_factory, org.members[2], at=T0).events] == [
        "vault_exported"
    ]
    revoked = token_revocation(event_factory, org.admins[0], at=T0).events
    assert [(e["type"], e["action"]) for e in revoked] == [("integrations", "activities_token_revoked")]
    breach = breach_finding(event_factory, org.members[2], at=T0).events
    assert {e["action"] for e in breach} == {"email_breached", "domain_breached"}


def test_scripted_incidents_spread_over_the_range(event_factory: EventFactory) -> None:
    start, end = T0, T0 + 6 * 3600
    incidents = scripted_incidents(event_factory, start=start, end=end)
    names = [i.name for i in incidents]
    assert names == [
        "brute_force",
        "password_spray",
        "failures_then_success",
        "bulk_deletion",
        "vault_export",
        "token_revocation",
        "breach_finding",
    ]
    firsts = [i.events[0]["timestamp"] for i in incidents]
    assert firsts == sorted(firsts) and firsts[-1] - firsts[0] > 3 * 3600
    for incident in incidents:
        assert incident.description
        assert all(start <= e["timestamp"] <= end for e in incident.events)
    again = scripted_incidents(EventFactory(make_org(7), seed=7), start=start, end=end)
    assert [_blobs(i.events) for i in again] == [_blobs(i.events) for i in incidents]
