"""Seeded, deterministic generator of raw NordPass Activity API events.

Everything derives from `random.Random(seed)`: no wall clock, no `uuid4()`, no hash randomisation.
The same seed and the same sequence of calls give byte-identical events, so tests can assert on
exact content and the demo can be replayed.

The events look like the API's JSON objects (docs/nordpass-api.md, "Response"): `type`, `action`,
`timestamp` (Unix seconds), `organization_uuid`, `user` {uuid, email}, `initiator` (an e-mail) and a
free-form `metadata` object carrying the keys public content relies on (docs/event-catalog.md,
"`metadata` fields the content reads"). Every address lives under reserved names (`*.example`) and
documentation IP ranges, so nothing here is real.
"""

from __future__ import annotations

import copy
import gc
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import catalog


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST = _words(
    "ada alan grace linus margaret dennis barbara ken frances edsger radia tim hedy claude katherine "
    "john joan donald sophie guido anita niklaus lynn bjarne karen vint annie robin mary brian"
)
_LAST = _words(
    "lovelace turing hopper torvalds hamilton ritchie liskov thompson allen dijkstra perlman berners "
    "lamarr shannon johnson backus clarke knuth wilson rossum borg wirth conway stroustrup jones cerf "
    "easley milner"
)
_COMPANIES = ("acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "tyrell")
_MSP_DOMAIN = "msp-partner.example"

_PLATFORMS = (
    ("chrome_extension", 30),
    ("edge_extension", 12),
    ("firefox_extension", 6),
    ("safari_extension", 4),
    ("windows", 14),
    ("macos", 10),
    ("linux", 2),
    ("ios", 8),
    ("android", 8),
    ("web", 6),
)
_PROVIDERS = (("nordpass", 55), ("azure_ad", 30), ("google", 10), ("okta", 5))
_ITEM_TYPES = (("password", 70), ("note", 10), ("credit_card", 6), ("personal_info", 4), ("passkey", 10))
_IMPORT_SOURCES = ("csv", "lastpass", "1password", "bitwarden", "chrome", "keepass")
_BREACHES = ("ExampleForum 2024", "DemoShop 2023", "SampleCloud 2025", "TestSocial 2022")

# Relative weights for background activity. Vault reads and logins dominate a real tenant; admin
# changes are rare. Every catalog pair keeps a small weight so a long enough run covers all of them.
_HOT_WEIGHTS: dict[tuple[str, str], float] = {
    ("item_access", "item_autofilled"): 30.0,
    ("item_access", "item_viewed"): 22.0,
    ("lock", "master_validated"): 18.0,
    ("item_access", "item_copied"): 12.0,
    ("login", "user_login_successful"): 10.0,
    ("item_access", "item_secret_viewed"): 4.0,
    ("item_access", "items_updated"): 3.0,
    ("item_access", "items_created"): 2.5,
    ("totp", "2fa_item_accessed"): 2.5,
    ("item_access", "2fa_item_accessed"): 1.5,
    ("login", "user_login_failed"): 1.5,
    ("lock", "master_failed"): 0.8,
    ("item_share", "items_shared"): 0.8,
    ("item_delete", "items_deleted"): 0.8,
    ("password_health", "item_created_weak"): 0.5,
    ("password_health", "item_updated_reused"): 0.4,
    ("sharing_hub", "item_viewed"): 0.4,
}
_AREA_WEIGHT = {"admin": 0.03, "vault": 0.15, "logins": 0.25}

# How often background activity contains an identical copy of an event in the same second
# (double clicks, client retries): the case that makes multiset dedup necessary.
_REPEAT_RATE = 0.004

_SUBJECT_IS_ACTOR_ADMIN = frozenset(
    {
        ("invites", "user_invite_accepted"),
        ("invites", "user_invite_declined"),
        ("access", "recovery_request_created"),
        ("consents", "organization_consent_given"),
        ("consents", "organization_consent_revoked"),
    }
)


@dataclass(frozen=True)
class Person:
    uuid: str
    email: str
    role: str  # "member" | "admin" | "owner" | "msp_admin"


@dataclass(frozen=True)
class Org:
    organization_uuid: str
    domain: str
    members: list[Person]
    admins: list[Person]  # the first is the owner
    msp_admins: list[Person]

    @property
    def everyone(self) -> list[Person]:
        return [*self.members, *self.admins, *self.msp_admins]

    @property
    def staff(self) -> list[Person]:
        """People with a seat in the vault (MSP admins manage the tenant, they don't use it)."""
        return [*self.members, *self.admins]


@dataclass(frozen=True)
class Incident:
    name: str
    description: str
    events: list[dict[str, Any]] = field(default_factory=list)


_V4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_V4_SET = (0x8000 << 48) | (4 << 76)


def _uuid(rng: random.Random) -> str:
    """A version-4 UUID from the seeded rng; same text as ``uuid.UUID(int=..., version=4)``, but
    formatted directly because this runs for most generated events."""
    h = f"{(rng.getrandbits(128) & _V4_CLEAR) | _V4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_CUMULATIVE: dict[tuple[tuple[str, int], ...], tuple[list[str], list[float]]] = {}


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    # Cumulative weights computed once per table; `choices` draws exactly as with plain weights.
    prepared = _CUMULATIVE.get(table)
    if prepared is None:
        prepared = ([v for v, _ in table], list(itertools.accumulate(float(w) for _, w in table)))
        _CUMULATIVE[table] = prepared
    return rng.choices(prepared[0], cum_weights=prepared[1])[0]


def make_org(seed: int = 7, *, members: int = 40, admins: int = 3, msp_admins: int = 1) -> Org:
    """A tenant with `members` members, `admins` admins (the first one is the owner) and MSP admins."""
    if admins < 1:
        raise ValueError("an organisation has at least one admin (its owner)")
    rng = random.Random(f"org:{seed}")
    company = rng.choice(_COMPANIES)
    domain = f"{company}{rng.randrange(10, 99)}.example"
    used: set[str] = set()

    def person(role: str, email_domain: str) -> Person:
        base = f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}"
        local, n = base, 1
        while f"{local}@{email_domain}" in used:
            n += 1
            local = f"{base}{n}"
        email = f"{local}@{email_domain}"
        used.add(email)
        return Person(uuid=_uuid(rng), email=email, role=role)

    org_uuid = _uuid(rng)
    admin_people = [person("owner" if i == 0 else "admin", domain) for i in range(admins)]
    member_people = [person("member", domain) for _ in range(members)]
    msp_people = [person("msp_admin", _MSP_DOMAIN) for _ in range(msp_admins)]
    return Org(org_uuid, domain, member_people, admin_people, msp_people)


@dataclass(frozen=True)
class _Habits:
    """What a person's normal activity looks like: stable per person, independent of call order."""

    ip: str
    platforms: tuple[str, ...]
    provider: str


class EventFactory:
    """Builds plausible raw events for one organisation. Deterministic for a seed and call order."""

    def __init__(self, org: Org, *, seed: int = 7) -> None:
        self.org = org
        self.seed = seed
        self.rng = random.Random(f"events:{seed}:{org.organization_uuid}")
        self._habits: dict[str, _Habits] = {}
        self._pairs = list(catalog.PAIRS)
        self._weights = [_HOT_WEIGHTS.get(pair, _AREA_WEIGHT[catalog.AREA_OF[pair]]) for pair in self._pairs]

    # -- people -------------------------------------------------------------------------------

    def habits(self, person: Person) -> _Habits:
        cached = self._habits.get(person.uuid)
        if cached is None:
            rng = random.Random(f"habits:{self.seed}:{person.uuid}")
            # Users sit in TEST-NET-1/2; attackers in the incidents below use TEST-NET-3.
            net = rng.choice(("192.0.2", "198.51.100"))
            platforms = tuple(dict.fromkeys(_weighted(rng, _PLATFORMS) for _ in range(3)))
            cached = _Habits(f"{net}.{rng.randrange(1, 255)}", platforms, _weighted(rng, _PROVIDERS))
            self._habits[person.uuid] = cached
        return cached

    def _someone(self, area: str) -> Person:
        pool = self.org.admins if area == "admin" else self.org.staff
        return self.rng.choice(pool)

    def _admin_actor(self) -> Person:
        # MSP admins do a share of admin work in managed tenants.
        if self.org.msp_admins and self.rng.random() < 0.15:
            return self.rng.choice(self.org.msp_admins)
        return self.rng.choice(self.org.admins)

    # -- events -------------------------------------------------------------------------------

    def event(
        self,
        event_type: str,
        action: str,
        *,
        at: int,
        user: Person | None = None,
        initiator: Person | str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One raw event. Unknown pairs are allowed (the API may invent new ones) and get generic
        metadata. `metadata` is merged over the defaults; a key set to None there is kept as null."""
        pair = (event_type, action)
        area = catalog.AREA_OF.get(pair, "vault")
        admin_pair = area == "admin"
        if user is None:
            user = self.rng.choice(self.org.members or self.org.staff) if admin_pair else self._someone(area)
        if initiator is None:
            subject_acts = pair in _SUBJECT_IS_ACTOR_ADMIN
            initiator = self._admin_actor() if admin_pair and not subject_acts else user
        actor = initiator if isinstance(initiator, Person) else None
        meta = self._default_metadata(pair, user=user, actor=actor)
        if actor is not None and actor.role == "msp_admin":
            meta["msp"] = {"user_uuid": actor.uuid, "user_email": actor.email, "user_role": "admin"}
        if metadata:
            meta.update(copy.deepcopy(metadata))
        return {
            "type": event_type,
            "action": action,
            "timestamp": int(at),
            "organization_uuid": self.org.organization_uuid,
            "user": {"uuid": user.uuid, "email": user.email},
            "initiator": initiator.email if isinstance(initiator, Person) else initiator,
            "metadata": meta,
        }

    def _items(self, count: int) -> list[dict[str, Any]]:
        return [{"uuid": _uuid(self.rng), "type": _weighted(self.rng, _ITEM_TYPES)} for _ in range(count)]

    def _default_metadata(
        self, pair: tuple[str, str], *, user: Person, actor: Person | None
    ) -> dict[str, Any]:
        event_type, action = pair
        area = catalog.AREA_OF.get(pair, "vault")
        habits = self.habits(actor if actor is not None else user)
        platform = "admin_panel" if area == "admin" else self.rng.choice(habits.platforms)
        meta: dict[str, Any] = {"platform": platform, "ip_address": habits.ip}
        # The pair's own keys where it has them, else its type's; the order of the random draws
        # inside each builder is part of the seeded output.
        build = _PAIR_METADATA.get(pair) or _TYPE_METADATA.get(event_type)
        if build is not None:
            meta.update(build(self, _MetaFor(event_type, action, area, user, habits)))
        return meta

    def background(
        self, start: int, end: int, *, per_minute: float, exclude: Iterable[tuple[str, str]] = ()
    ) -> list[dict[str, Any]]:
        """Steady activity with timestamps in [start, end), sorted by time.

        The count is `per_minute` x minutes. Hot pairs (autofill, views, unlocks, logins) dominate,
        every catalog pair keeps a small weight, and a few events are repeated verbatim in the same
        second, as real clients do. `exclude` drops pairs (e.g. the ones an analytic rule alerts on,
        for a background that must stay quiet); the remaining weights are used as they are.
        """
        if end <= start:
            return []
        count = round(per_minute * (end - start) / 60)
        # Millions of small acyclic dicts: the cyclic GC's passes over them only cost time.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._background(start, end, count, frozenset(exclude))
        finally:
            if was_enabled:
                gc.enable()

    def _background(
        self, start: int, end: int, count: int, exclude: frozenset[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        rng = self.rng
        times = sorted(rng.randrange(start, end) for _ in range(count))
        if exclude:
            kept = [(p, w) for p, w in zip(self._pairs, self._weights, strict=True) if p not in exclude]
            pairs = rng.choices([p for p, _ in kept], weights=[w for _, w in kept], k=count)
        else:
            pairs = rng.choices(self._pairs, weights=self._weights, k=count)
        out: list[dict[str, Any]] = []
        for at, (event_type, action) in zip(times, pairs, strict=True):
            event = self.event(event_type, action, at=at)
            out.append(event)
            if rng.random() < _REPEAT_RATE:
                out.append(copy.deepcopy(event))
        return out

    def sweep(self, at: int) -> list[dict[str, Any]]:
        """One event of every catalog pair, all at `at` (catalog coverage in one call)."""
        return [self.event(t, a, at=at) for t, a in catalog.PAIRS]


# -- default metadata, per event type or pair ------------------------------------------------


@dataclass(slots=True)
class _MetaFor:
    """What a metadata builder may read about the event it fills in."""

    event_type: str
    action: str
    area: str
    user: Person
    habits: _Habits


_MetaBuilder = Callable[[EventFactory, _MetaFor], dict[str, Any]]


def _one_item(f: EventFactory) -> dict[str, Any]:
    item = f._items(1)[0]
    return {"item_uuid": item["uuid"], "item_type": item["type"]}


def _login_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    meta: dict[str, Any] = {"provider": e.habits.provider}
    if e.action == "user_login_failed":
        meta["reason"] = f.rng.choice(("invalid_password", "invalid_password", "mfa_failed"))
    return meta


def _master_failed_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    return {"attempt": f.rng.randrange(1, 4)}


def _items_deleted_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    return {"items": f._items(f.rng.choice((1, 1, 1, 2, 3)))}


def _reassignment_deleted_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    return {"items": f._items(f.rng.randrange(1, 6)), "previous_owner_uuid": e.user.uuid}


_ITEMS_WRITTEN = frozenset({"items_created", "items_updated", "items_imported", "items_imported_v2"})


def _vault_item_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    """Item access, password health and sharing-hub events: the item(s) the event is about."""
    rng, action = f.rng, e.action
    meta: dict[str, Any] = {}
    if action in _ITEMS_WRITTEN:
        imported = "imported" in action
        meta["items"] = f._items(rng.choice((1, 1, 2)) if not imported else 0)
        if imported:
            meta["items_count"] = rng.randrange(5, 400)
            meta["source"] = rng.choice(_IMPORT_SOURCES)
    elif action in ("items_imported_reused", "items_imported_weak"):
        meta["items_count"] = rng.randrange(1, 40)
    elif action == "vault_exported":
        meta["items_count"] = rng.randrange(20, 800)
        meta["format"] = rng.choice(("csv", "json"))
    elif action.startswith("2fa_device"):
        meta["device"] = rng.choice(("authenticator_app", "security_key"))
    else:
        meta.update(_one_item(f))
        if e.event_type != "sharing_hub":
            meta["shared"] = rng.random() < 0.25
    return meta


def _totp_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    # `totp` spans two areas: its vault pairs are item events, its admin pairs carry nothing.
    return _vault_item_meta(f, e) if e.area == "vault" else {}


def _item_share_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    rng = f.rng
    meta = _one_item(f)
    meta["recipient_uuid"] = rng.choice(f.org.staff).uuid
    meta["permission"] = rng.choice(("read", "read", "edit", "owner"))
    if e.action == "item_new_ttl_set":
        meta["ttl_seconds"] = rng.choice((3600, 86400, 604800))
    return meta


def _user_status_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    status = f.rng.choice(("suspended", "suspended", "active", "deleted"))
    return {"status": status, "previous_status": "active" if status != "active" else "suspended"}


def _user_email_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    return {"previous_email": f"old.{e.user.email}"}


def _user_invited_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    rng = f.rng
    count = rng.choice((1, 1, 1, 2, 5))
    emails = [f"new.user{rng.randrange(1000, 9999)}@{f.org.domain}" for _ in range(count)]
    return {"emails": emails, "role": "member"}


def _whitelisted_domains_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    return {"domains": [f.org.domain]}


def _user_role_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    role = f.rng.choice(("admin", "member"))
    return {"role": role, "previous_role": "member" if role == "admin" else "admin"}


def _group_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    meta: dict[str, Any] = {"group_uuid": _uuid(f.rng)}
    if e.action.startswith("group_users"):
        staff = f.org.staff
        meta["user_uuids"] = [p.uuid for p in f.rng.sample(staff, min(3, len(staff)))]
    return meta


def _org_domain_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    return {"domain": f.org.domain}


def _integration_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    if e.action.startswith("activities_token"):
        name = f.rng.choice(("Microsoft Sentinel", "Sentinel prod", "SIEM"))
        return {"token_name": name, "integration": "microsoft_sentinel"}
    return {"integration": "vanta"}


def _credential_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    return {"credential_uuid": _uuid(f.rng)}


def _email_breached_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    return {
        "breach_name": f.rng.choice(_BREACHES),
        "breached_email": e.user.email,
        "data_classes": ["email", "password"],
    }


def _domain_breached_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    return {
        "breach_name": f.rng.choice(_BREACHES),
        "domain": f.org.domain,
        "breached_emails_count": f.rng.randrange(1, 12),
    }


def _setting_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    return {"setting": f.rng.choice(("password_policy", "autofill", "sharing", "mfa_required", "session"))}


def _plan_meta(f: EventFactory, e: _MetaFor) -> dict[str, Any]:
    return {"plan": "enterprise", "seats": len(f.org.staff)}


# A pair's own builder wins over its type's.
_PAIR_METADATA: dict[tuple[str, str], _MetaBuilder] = {
    ("lock", "master_failed"): _master_failed_meta,
    ("item_delete", "items_deleted"): _items_deleted_meta,
    ("item_delete", "item_reassignment_deleted"): _reassignment_deleted_meta,
    ("access", "user_status_updated"): _user_status_meta,
    ("access", "user_email_updated"): _user_email_meta,
    ("invites", "user_invited"): _user_invited_meta,
    ("invites", "whitelisted_domains_updated"): _whitelisted_domains_meta,
    ("roles", "user_role_updated"): _user_role_meta,
    ("breach", "email_breached"): _email_breached_meta,
    ("breach", "domain_breached"): _domain_breached_meta,
    ("totp", "global_settings_updated"): _setting_meta,
}
_TYPE_METADATA: dict[str, _MetaBuilder] = {
    "login": _login_meta,
    "item_access": _vault_item_meta,
    "password_health": _vault_item_meta,
    "sharing_hub": _vault_item_meta,
    "totp": _totp_meta,
    "item_share": _item_share_meta,
    "groups": _group_meta,
    "group_provisioning": _group_meta,
    "domain": _org_domain_meta,
    "oauth_domain": _org_domain_meta,
    "integrations": _integration_meta,
    "oauth_credentials": _credential_meta,
    "scim_credentials": _credential_meta,
    "oauth_token_management": _credential_meta,
    "global_settings": _setting_meta,
    "role_settings": _setting_meta,
    "user_settings": _setting_meta,
    "checkout": _plan_meta,
    "billing": _plan_meta,
}


# -- scripted incidents (what the analytic rules exist to catch) -----------------------------


def _attacker_ip(f: EventFactory) -> str:
    return f"203.0.113.{f.rng.randrange(1, 255)}"


def brute_force(f: EventFactory, user: Person, *, at: int, ip: str, attempts: int = 8) -> Incident:
    """`attempts` failed logins for one user from one IP within a few minutes. Two of them share a
    second and their whole content (a client retry), so they are identical events."""
    events: list[dict[str, Any]] = []
    t = at
    for i in range(attempts):
        if i == 2:
            # Same second, same content as the previous attempt: a legitimate identical repeat.
            events.append(copy.deepcopy(events[-1]))
            continue
        meta = {"ip_address": ip, "provider": "nordpass", "reason": "invalid_password", "platform": "web"}
        events.append(f.event("login", "user_login_failed", at=t, user=user, initiator=user, metadata=meta))
        t += f.rng.randrange(4, 20)
    return Incident(
        "brute_force",
        f"{attempts} failed logins for {user.email} from {ip} within {events[-1]['timestamp'] - at} s",
        events,
    )


def password_spray(f: EventFactory, users: Sequence[Person], *, at: int, ip: str) -> Incident:
    """One failed login per user from one IP, a few seconds apart."""
    if len(users) < 10:
        raise ValueError("a password spray needs at least 10 users")
    events = []
    t = at
    for person in users:
        meta = {"ip_address": ip, "provider": "nordpass", "reason": "invalid_password", "platform": "web"}
        events.append(
            f.event("login", "user_login_failed", at=t, user=person, initiator=person, metadata=meta)
        )
        t += f.rng.randrange(1, 6)
    return Incident("password_spray", f"one failed login each for {len(users)} users from {ip}", events)


def failures_then_success(f: EventFactory, user: Person, *, at: int, ip: str) -> Incident:
    """Failed logins followed by a successful one for the same user from the same IP."""
    events = []
    t = at
    meta = {"ip_address": ip, "provider": "nordpass", "platform": "web"}
    for _ in range(5):
        events.append(
            f.event(
                "login",
                "user_login_failed",
                at=t,
                user=user,
                initiator=user,
                metadata={**meta, "reason": "invalid_password"},
            )
        )
        t += f.rng.randrange(5, 30)
    events.append(f.event("login", "user_login_successful", at=t, user=user, initiator=user, metadata=meta))
    return Incident("failures_then_success", f"5 failures then a success for {user.email} from {ip}", events)


def bulk_deletion(f: EventFactory, user: Person, *, at: int, items: int = 25) -> Incident:
    """items_deleted events within a couple of minutes whose `metadata.items` sum to `items`."""
    events = []
    t = at
    left = items
    while left > 0:
        n = min(left, f.rng.randrange(4, 11))
        meta = {"items": f._items(n)}
        events.append(f.event("item_delete", "items_deleted", at=t, user=user, initiator=user, metadata=meta))
        left -= n
        t += f.rng.randrange(3, 15)
    return Incident("bulk_deletion", f"{items} items deleted by {user.email} in {len(events)} events", events)


def vault_export(f: EventFactory, user: Person, *, at: int) -> Incident:
    event = f.event("item_access", "vault_exported", at=at, user=user, initiator=user)
    return Incident("vault_export", f"{user.email} exported the vault", [event])


def token_revocation(f: EventFactory, admin: Person, *, at: int) -> Incident:
    event = f.event(
        "integrations",
        "activities_token_revoked",
        at=at,
        user=admin,
        initiator=admin,
        metadata={"token_name": "Microsoft Sentinel"},
    )
    return Incident("token_revocation", f"{admin.email} revoked the activity token", [event])


def breach_finding(f: EventFactory, user: Person, *, at: int) -> Incident:
    admin = f.org.admins[0]
    events = [
        f.event("breach", "email_breached", at=at, user=user, initiator=user),
        f.event("breach", "domain_breached", at=at + 1, user=admin, initiator=admin),
    ]
    return Incident("breach_finding", f"{user.email} and {f.org.domain} found in a breach", events)


def scripted_incidents(f: EventFactory, *, start: int, end: int) -> list[Incident]:
    """One of each incident, spread over [start, end]. Each incident's events stay in the range
    as long as it is at least 20 minutes long (incidents last a few minutes)."""
    if end < start:
        raise ValueError("end before start")
    org = f.org
    staff = org.staff
    span = end - start
    # Incidents take up to ~10 minutes; keep their starts clear of the end.
    usable = max(0, span - 600)

    def slot(i: int, n: int) -> int:
        return start + (usable * (2 * i + 1)) // (2 * n)

    victim, deleter, exporter, breached = (staff[i % len(staff)] for i in (0, 1, 2, 3))
    spray_users = staff[4:16] if len(staff) >= 16 else list(org.everyone)
    n = 7
    incidents = [
        brute_force(f, victim, at=slot(0, n), ip=_attacker_ip(f)),
        password_spray(f, spray_users, at=slot(1, n), ip=_attacker_ip(f)),
        failures_then_success(f, staff[-1], at=slot(2, n), ip=_attacker_ip(f)),
        bulk_deletion(f, deleter, at=slot(3, n)),
        vault_export(f, exporter, at=slot(4, n)),
        token_revocation(f, org.admins[-1], at=slot(5, n)),
        breach_finding(f, breached, at=slot(6, n)),
    ]
    return incidents
