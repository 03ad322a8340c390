"""The demo's view of the content beyond analytic rules: what the ASIM parsers return and which
hunting queries find the planted scenarios, run with duckdb-kql over the rows that landed.

`sandbox.demo` plants the scenarios (`history_scenarios` into the tenant's first history,
`live_scenarios` between live ticks), then calls `run_asim` and `run_hunting` on the landed table,
and prints and renders what they return (`summary_lines`, `html_sections`). Parsers and queries are
the deployed text, run through `content.localkql` (stored functions, the local stand-in for
`geo_info_from_ip_address()`); anything duckdb-kql cannot run is reported as not runnable locally,
never skipped silently.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from . import datagen

HOUR = 3600
DAY = 86_400
ATTACKER_NET = "203.0.113."
OUTSIDE_RECIPIENT = "drop.box@outsider.example"

# The hunting queries each planted scenario exists to show (file stems without "NordPass-").
EXPECTED_HUNTING: dict[str, tuple[str, ...]] = {
    "password_spray": ("PasswordSprayLongWindow",),
    "failures_then_success": ("SignInFromNewIp", "SignInFromNewCountry"),
    "slow_brute_force": ("BruteForceLowAndSlow",),
    "off_hours_admin": ("OffHoursAdminActivity",),
    "factor_change_then_export": ("MfaOrRecoveryChangeThenExport",),
    "external_sharing_burst": ("ExternalSharingBurst",),
    "bulk_mfa_reset": ("BulkMfaReset",),
    "secret_harvesting": ("SecretHarvestingBurst",),
}
# Planted once, into the first run's history (`history_scenarios`); later runs plant only the rest.
HISTORY_SCENARIOS = ("slow_brute_force", "off_hours_admin")
# Queries no sandbox scenario can show, and why.
NOT_PLANTED: dict[str, str] = {
    "DormantAccountActivity": "needs 30+ days of history; the sandbox keeps 7.5",
    "FailuresInNordPassAndEntraId": "needs Entra ID SigninLogs, which the sandbox does not have",
}


class Incident(Protocol):
    name: str
    run: int
    event_ids: list[str]
    hunted_by: list[str]


Attribute = Callable[[dict[str, Any], Sequence[Any]], Any]


# -- planting ------------------------------------------------------------------------------------------


def _attacker_ip(f: datagen.EventFactory) -> str:
    return f"{ATTACKER_NET}{f.rng.randrange(1, 255)}"


def _last_night(anchor: int, hour: int = 2) -> int:
    """The latest `hour`:30 UTC strictly before `anchor` minus ten minutes (inside the backfill)."""
    moment = datetime.fromtimestamp(anchor - 600, UTC).replace(hour=hour, minute=30, second=0, microsecond=0)
    if moment.timestamp() > anchor - 600:
        moment -= timedelta(days=1)
    return int(moment.timestamp())


def history_scenarios(f: datagen.EventFactory, anchor: int) -> list[datagen.Incident]:
    """Scenarios that need history, planted once into the first run's 7-day history: a brute force
    spread over four days, and Admin Panel changes at night by a member who never does admin work."""
    staff = f.org.staff
    # People no other scenario uses, so each hit is attributed to the right one.
    victim, intruder, promoted = (staff[i % len(staff)] for i in (23, 24, 25))
    ip = _attacker_ip(f)
    slow: list[dict[str, Any]] = []
    for day in range(1, 5):
        for attempt in range(3):
            at = anchor - day * DAY + attempt * 2 * HOUR
            meta = {"ip_address": ip, "provider": "nordpass", "reason": "invalid_password", "platform": "web"}
            slow.append(
                f.event("login", "user_login_failed", at=at, user=victim, initiator=victim, metadata=meta)
            )
    night = _last_night(anchor)
    night_ip = _attacker_ip(f)
    admin_work = [
        f.event(
            "roles",
            "user_role_updated",
            at=night,
            user=promoted,
            initiator=intruder,
            metadata={"role": "admin", "previous_role": "member", "ip_address": night_ip},
        ),
        f.event(
            "global_settings",
            "password_policy_toggled",
            at=night + 240,
            user=promoted,
            initiator=intruder,
            metadata={"setting": "password_policy", "ip_address": night_ip},
        ),
    ]
    return [
        datagen.Incident(
            "slow_brute_force", f"12 failed logins for {victim.email} from {ip} over 4 days (3 a day)", slow
        ),
        datagen.Incident(
            "off_hours_admin",
            f"{intruder.email} (a member) made {promoted.email} an admin and changed the password policy "
            f"at {datetime.fromtimestamp(night, UTC):%H:%M} UTC",
            admin_work,
        ),
    ]


def live_scenarios(f: datagen.EventFactory, run: int) -> list[datagen.Incident]:
    """Scenarios planted between live ticks, each a few minutes long (`at=0`: the demo shifts them
    to end just before the tick). People rotate between runs like the rules' incidents."""
    staff, admins = f.org.staff, f.org.admins
    shift = (run - 1) * 7

    def person(i: int) -> datagen.Person:
        return staff[(i + shift) % len(staff)]

    # Clear of the rules' incidents (people 0-15 and the last one).
    exporter, sharer, harvester = person(16), person(17), person(18)
    ip = _attacker_ip(f)
    factor = [
        f.event(
            "recovery_code",
            "recovery_downloaded",
            at=0,
            user=exporter,
            initiator=exporter,
            metadata={"ip_address": ip},
        ),
        f.event(
            "totp",
            "2fa_device_deleted",
            at=60,
            user=exporter,
            initiator=exporter,
            metadata={"ip_address": ip, "device": "authenticator_app"},
        ),
        f.event(
            "item_access",
            "vault_exported",
            at=480,
            user=exporter,
            initiator=exporter,
            metadata={"ip_address": ip, "items_count": 612, "format": "csv"},
        ),
    ]
    shares = [
        f.event(
            "item_share",
            "items_shared",
            at=i * 15,
            user=sharer,
            initiator=sharer,
            metadata={"recipient_email": OUTSIDE_RECIPIENT, "permission": "read"},
        )
        for i in range(15)
    ]
    admin = admins[run % len(admins)]
    members = [person(19 + i) for i in range(4)]
    resets = [
        f.event(
            "global_settings" if i % 2 else "totp",
            "mfa_reset" if i % 2 else "2fa_reset_in_ecp",
            at=i * 40,
            user=m,
            initiator=admin,
        )
        for i, m in enumerate(members)
    ]
    harvest = [
        f.event(
            "item_access",
            "item_copied" if i % 3 else "item_secret_viewed",
            at=i * 6,
            user=harvester,
            initiator=harvester,
        )
        for i in range(40)
    ]
    return [
        datagen.Incident(
            "factor_change_then_export",
            f"{exporter.email} downloaded recovery codes, removed an MFA device, then exported the vault",
            factor,
        ),
        datagen.Incident(
            "external_sharing_burst", f"{sharer.email} shared 15 items with {OUTSIDE_RECIPIENT}", shares
        ),
        datagen.Incident("bulk_mfa_reset", f"{admin.email} reset MFA for {len(members)} members", resets),
        datagen.Incident(
            "secret_harvesting", f"{harvester.email} copied or revealed 40 items' secrets", harvest
        ),
    ]


# -- ASIM --------------------------------------------------------------------------------------------


def run_asim(con: Any, incidents: Sequence[Incident], *, run: int) -> dict[str, Any]:
    """Each parameter-less ASIM parser over the landed rows: counts by EventType/EventResult, and
    the normalized rows of this run's scripted incidents."""
    from content import asim, localkql

    parsers = asim.load_parsers()
    schemas: list[dict[str, Any]] = []
    views: list[dict[str, Any]] = []
    mine = {eid: i for i in incidents if i.run == run for eid in i.event_ids}
    for schema in asim.SCHEMAS.values():
        entry: dict[str, Any] = {
            "schema": schema.name,
            "version": schema.version,
            "parser": schema.parameterless_parser,
        }
        # What the event is about: the target user, or the changed object for audit events.
        target = "Object" if schema is asim.AUDIT_EVENT else "TargetUsername"
        query = (
            f"{schema.parameterless_parser} | project EventOriginalUid, EventType, EventResult, EventResultDetails, "
            f"User, Target = {target}, SrcIpAddr"
        )
        try:
            rows = localkql.execute(query, con, parsers)
        except Exception as exc:  # reported, never skipped silently
            entry.update(status=_status(exc), reason=str(exc).splitlines()[0][:160], rows=0, by_type=[])
            schemas.append(entry)
            continue
        counts = Counter((r["EventType"], r["EventResult"]) for r in rows)
        entry.update(
            status="ran",
            rows=len(rows),
            by_type=[
                {"event_type": t, "event_result": res, "count": n} for (t, res), n in counts.most_common()
            ],
        )
        schemas.append(entry)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            incident = mine.get(r["EventOriginalUid"])
            if incident is not None:
                grouped.setdefault(incident.name, []).append(r)
        for name, found in grouped.items():
            views.append(
                {
                    "incident": name,
                    "schema": schema.name,
                    "rows": len(found),
                    "types": dict(Counter(f"{r['EventType']}/{r['EventResult']}" for r in found)),
                    "details": sorted({r["EventResultDetails"] for r in found if r["EventResultDetails"]}),
                    "targets": sorted({r["Target"] for r in found if r["Target"]}),
                    "actors": sorted({r["User"] for r in found if r["User"]} - {r["Target"] for r in found}),
                    "ips": sorted({r["SrcIpAddr"] for r in found if r["SrcIpAddr"]}),
                }
            )
    order = {i.name: n for n, i in enumerate(incidents)}
    views.sort(key=lambda v: (order.get(v["incident"], 99), v["schema"]))
    return {"schemas": schemas, "incidents": views}


def _status(exc: Exception) -> str:
    import duckdb_kql

    if isinstance(exc, duckdb_kql.KqlUnsupportedError | duckdb_kql.KqlSyntaxError):
        return "not runnable locally"
    return "error"


# -- hunting -----------------------------------------------------------------------------------------


def run_hunting(
    con: Any, incidents: Sequence[Incident], *, run: int, attribute: Attribute
) -> list[dict[str, Any]]:
    """Each hunting query as deployed, over the landed rows, as if run now; each result row is
    attributed to this run's scenarios ("scripted"), an earlier run's ("earlier") or neither
    ("background"), like the analytic rules."""
    from content import hunting, localkql

    results: list[dict[str, Any]] = []
    for query in hunting.load_queries():
        entry: dict[str, Any] = {"query": query.key, "name": query.name}
        if query.key in NOT_PLANTED:
            entry["note"] = NOT_PLANTED[query.key]
        try:
            rows = localkql.execute(query.query, con)
        except Exception as exc:  # reported, the demo goes on
            entry.update(status=_status(exc), reason=str(exc).splitlines()[0][:160], hits=0)
            results.append(entry)
            continue
        found = attribute_hits(rows, incidents, query.key, run=run, attribute=attribute, by=_hunted_by)
        entry.update(status="ran", hits=len(rows), attributed=found)
        results.append(entry)
    return results


def _hunted_by(incident: Incident) -> list[str]:
    return incident.hunted_by


def attribute_hits(
    rows: Sequence[dict[str, Any]],
    incidents: Sequence[Any],
    key: str,
    *,
    run: int,
    attribute: Attribute,
    by: Callable[[Any], list[str]],
) -> dict[str, int]:
    """How many result rows of rule or query `key` belong to this run's scenarios ("scripted"), an
    earlier run's ("earlier") or neither ("background"); `key` joins `by(incident)` (the incident's
    detected_by or hunted_by) of each scenario of this run it found."""
    attributed: Counter[str] = Counter()
    for row in rows:
        incident = attribute(row, incidents)
        if incident is None:
            attributed["background"] += 1
        elif incident.run != run:
            attributed["earlier"] += 1
        else:
            attributed["scripted"] += 1
            found_by = by(incident)
            if key not in found_by:
                found_by.append(key)
    return dict(attributed)


# -- output ------------------------------------------------------------------------------------------


def _short(name: str) -> str:
    return name.removeprefix("NordPass - ")


def _fmt(n: int) -> str:
    return f"{n:,}"


def _view_text(view: dict[str, Any]) -> str:
    types = ", ".join(f"{n} x {t}" for t, n in view["types"].items())
    details = f" ({', '.join(view['details'])})" if view["details"] else ""
    targets = view["targets"]
    text = f"{view['schema']}: {types}{details}"
    if view["schema"] == "AuditEvent" and targets:
        text += f" on {', '.join(targets)}"
    elif targets:
        text += f" for {targets[0] if len(targets) == 1 else f'{len(targets)} members'}"
    if view["ips"]:
        text += f" from {', '.join(view['ips'][:2])}"
    return text


def summary_lines(result: dict[str, Any], width: int) -> list[str]:
    """The summary's `asim` and `hunting` blocks."""
    return [*_asim_lines(result.get("asim") or {}, width), *_hunting_lines(result, width)]


def _asim_lines(asim: dict[str, Any], width: int) -> list[str]:
    lines: list[str] = []
    parts = [_schema_text(s) for s in asim.get("schemas", [])]
    if parts:
        lines.append(f"asim       {parts[0]}")
        lines += [f"           {p}" for p in parts[1:]]
    for view in asim.get("incidents", []):
        lines.append(f"  {view['incident']:<{width}}  -> {_view_text(view)}")
    return lines


def _schema_text(s: dict[str, Any]) -> str:
    if s["status"] != "ran":
        return f"{s['schema']} {s['version']}: {s['status']}"
    top = ", ".join(f"{b['event_type']}/{b['event_result']} {_fmt(b['count'])}" for b in s["by_type"][:3])
    return f"{s['schema']} {s['version']}: {_fmt(s['rows'])} rows ({top})"


def _hunting_lines(result: dict[str, Any], width: int) -> list[str]:
    hunting = result.get("hunting") or []
    if not hunting:
        return []
    ran = sum(1 for h in hunting if h["status"] == "ran")
    names = {h["query"]: _short(h["name"]) for h in hunting}
    lines = [f"hunting    {len(hunting)} hunting queries, {ran} ran locally with duckdb-kql"]
    for incident in result.get("incidents", []):
        hunted = incident.get("hunted_by") or []
        if hunted or incident["name"] in EXPECTED_HUNTING:
            found = ", ".join(names.get(k, k) for k in hunted) or "no hunting query found it"
            lines.append(f"  {incident['name']:<{width}}  -> {found}")
    background = [
        f"{names[h['query']]} ({h['attributed']['background']})"
        for h in hunting
        if h["status"] == "ran" and h.get("attributed", {}).get("background")
    ]
    if background:
        lines.append(f"  {'background':<{width}}  -> {'; '.join(background)}")
    earlier = sum(int(h.get("attributed", {}).get("earlier", 0)) for h in hunting)
    if earlier:
        lines.append(f"  {'earlier runs':<{width}}  -> {earlier} hits on scenarios of earlier demo runs")
    lines += [line for h in hunting if (line := _query_note(h, names[h["query"]]))]
    return lines


def _query_note(h: dict[str, Any], name: str) -> str | None:
    """A line for a hunting query that did not run, or that stayed quiet for a stated reason."""
    if h["status"] != "ran":
        return f"  {name}: {h['status']} ({h.get('reason', '')})"
    if h.get("note") and not h.get("hits"):
        return f"  {name}: quiet, as expected ({h['note']})"
    return None


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def html_sections(result: dict[str, Any]) -> str:
    """Two report cards: the ASIM view and the hunting hits (tables, no scripts, nothing fetched)."""
    asim = result.get("asim")
    hunting = result.get("hunting")
    out = []
    if asim:
        schema_rows = "".join(
            f"<tr><td>{_e(s['schema'])} {_e(s['version'])}</td><td><code>{_e(s['parser'])}</code></td>"
            f"<td class='n'>{_fmt(s.get('rows', 0))}</td><td>"
            + (
                _e(
                    ", ".join(
                        f"{b['event_type']}/{b['event_result']}: {_fmt(b['count'])}" for b in s["by_type"]
                    )
                )
                if s["status"] == "ran"
                else _e(f"{s['status']}: {s.get('reason', '')}")
            )
            + "</td></tr>"
            for s in asim["schemas"]
        )
        view_rows = "".join(
            f"<tr><td>{_e(v['incident'])}</td><td>{_e(v['schema'])}</td><td class='n'>{v['rows']}</td>"
            f"<td>{_e(', '.join(f'{n} x {t}' for t, n in v['types'].items()))}</td>"
            f"<td>{_e(', '.join(v['details']))}</td><td>{_e(', '.join(v['targets'][:4]))}"
            f"{' ...' if len(v['targets']) > 4 else ''}</td><td>{_e(', '.join(v['ips'][:3]))}</td></tr>"
            for v in asim["incidents"]
        )
        out.append(
            '<div class="card"><h2>ASIM view: what the parsers return (parameter-less parsers over the landed rows)</h2>'
            "<table><tr><th>schema</th><th>parser</th><th>rows</th><th>EventType/EventResult</th></tr>"
            f"{schema_rows}</table>"
            '<h2 style="margin-top:14px">The scripted incidents, normalized</h2>'
            "<table><tr><th>incident</th><th>schema</th><th>rows</th><th>EventType/EventResult</th>"
            f"<th>EventResultDetails</th><th>target</th><th>source IP</th></tr>{view_rows}</table></div>"
        )
    if hunting:
        names = {h["query"]: _short(h["name"]) for h in hunting}
        incident_rows = "".join(
            f"<tr><td>{_e(i['name'])}</td><td>{_e(i['description'])}</td>"
            f"<td class='{'ok' if i.get('hunted_by') else 'miss'}'>"
            f"{_e(', '.join(names.get(k, k) for k in i.get('hunted_by') or []) or 'no hunting query found it')}</td></tr>"
            for i in result.get("incidents", [])
            if i.get("hunted_by") or i["name"] in EXPECTED_HUNTING
        )
        query_rows = "".join(
            f"<tr><td>{_e(names[h['query']])}</td><td>{_e(h['status'])}</td><td class='n'>{h.get('hits', 0)}</td>"
            f"<td class='n'>{h.get('attributed', {}).get('scripted', 0)}</td>"
            f"<td class='n'>{h.get('attributed', {}).get('earlier', 0)}</td>"
            f"<td class='n'>{h.get('attributed', {}).get('background', 0)}</td>"
            f"<td>{_e(h.get('reason') or h.get('note') or '')}</td></tr>"
            for h in hunting
        )
        out.append(
            '<div class="card"><h2>Hunting queries and the planted scenarios they found</h2>'
            "<table><tr><th>scenario</th><th>what happened</th><th>found by</th></tr>"
            f"{incident_rows}</table>"
            '<h2 style="margin-top:14px">Hunting query results (query KQL from the YAML, run with duckdb-kql)</h2>'
            "<table><tr><th>hunting query</th><th>status</th><th>rows</th><th>this run's scenarios</th>"
            f"<th>earlier runs</th><th>background</th><th>note</th></tr>{query_rows}</table></div>"
        )
    return "\n".join(out)
