"""The demo's HTML report: one self-contained file, charts drawn here as inline SVG.

No scripts, fonts or stylesheets are fetched, so the file opens offline and in a locked-down
browser. The charts follow the workbook's tabs: activity over time by area (admin / vault / logins,
from `sandbox.catalog`), top actions, logins by platform, failed logins by user, and the analytic
rules' hits with the scripted incident each one points at; then the connector's health rows and
the status its Sentinel connector page would show.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nordpass_connector.schema import HEALTH_TABLE_NAME, TABLE_NAME

from . import catalog, demo_content

AREA_COLORS = {"admin": "#7b5ea7", "vault": "#2f76b7", "logins": "#3a9d5d"}
AREA_LABELS = {"admin": "Admin Panel", "vault": "Vault", "logins": "Logins"}
BAR = "#2f76b7"
FAIL = "#c8553d"
MUTED = "#9aa5b1"
EARLIER = "#e0a458"
HIT_KINDS = (
    ("scripted", FAIL, "this run's scripted incidents"),
    ("earlier", EARLIER, "earlier runs' incidents"),
    ("background", MUTED, "background activity"),
)
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"


def open_landed(db_path: Path) -> Any:
    """An in-memory duckdb-kql connection holding the landed table plus each row's arrival time
    (the column `content.localrun` maps `ingestion_time()` to). The stand-in's file is only read."""
    import duckdb_kql

    from content import localrun

    con = duckdb_kql.connect()
    con.execute("SET TimeZone = 'UTC'")  # stored times are naive UTC; ago() must agree
    con.execute(f"ATTACH '{db_path}' AS landed (READ_ONLY)")
    con.execute(
        f'CREATE TABLE {TABLE_NAME} AS SELECT t.*, i."IngestedAt" AS "{localrun.INGESTION_COLUMN}" '
        f"FROM landed.{TABLE_NAME} t LEFT JOIN "
        f'(SELECT "EventId", min("IngestedAt") AS "IngestedAt" FROM landed._demo_ingestion GROUP BY 1) i '
        f'ON t."EventId" = i."EventId"'
    )
    # The connector's health rows, one per run (the stand-in creates the table on start).
    con.execute(f"CREATE TABLE {HEALTH_TABLE_NAME} AS SELECT * FROM landed.{HEALTH_TABLE_NAME}")
    con.execute("DETACH landed")
    return con


HEALTH_FIELDS = (
    "TimeGenerated",
    "RunId",
    "Outcome",
    "EventsFetched",
    "EventsSent",
    "LagSeconds",
    "DurationSeconds",
    "ConsecutiveFailures",
    "ErrorClass",
)


def health_rows(con: Any, *, since: float) -> list[dict[str, Any]]:
    """The health rows of the runs that ended at or after `since` (Unix seconds), oldest first."""
    columns = ", ".join(f'"{c}"' for c in HEALTH_FIELDS)
    got = con.execute(
        f'SELECT {columns} FROM {HEALTH_TABLE_NAME} WHERE "TimeGenerated" >= to_timestamp(?)::TIMESTAMP '
        'ORDER BY "TimeGenerated", "RunId"',
        [int(since)],
    ).fetchall()
    rows = [dict(zip(HEALTH_FIELDS, values, strict=True)) for values in got]
    for row in rows:
        row["TimeGenerated"] = row["TimeGenerated"].replace(tzinfo=UTC).timestamp()
    return rows


def collect(con: Any) -> dict[str, Any]:
    """The figures the charts draw, straight from the landed rows."""

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return list(con.execute(sql).fetchall())

    t = TABLE_NAME
    per_hour = rows(
        f"SELECT epoch(date_trunc('hour', \"EventTime\"))::BIGINT, event_type, action, count(*) FROM {t} "
        f'WHERE "EventTime" IS NOT NULL GROUP BY ALL'
    )
    top_actions = rows(
        f"SELECT event_type || '.' || action, count(*) FROM {t} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 12"
    )
    platforms = rows(
        f"SELECT coalesce(metadata->>'platform', '(none)') AS p, "
        f"count(*) FILTER (WHERE action = 'user_login_successful'), "
        f"count(*) FILTER (WHERE action = 'user_login_failed') "
        f"FROM {t} WHERE event_type = 'login' GROUP BY 1 ORDER BY count(*) DESC, 1"
    )
    failed = rows(
        f"SELECT coalesce(nullif(\"OriginalUserEmail\", ''), user_email), count(*) FROM {t} "
        f"WHERE event_type = 'login' AND action = 'user_login_failed' "
        # The last day only: over a week every member collects a few typos, and a brute force drowns.
        f'AND "EventTime" >= (SELECT max("EventTime") FROM {t}) - INTERVAL 1 DAY '
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 12"
    )
    totals = rows(
        f'SELECT count(*), count(DISTINCT user_email), min(epoch("EventTime")), max(epoch("EventTime")) FROM {t}'
    )[0]
    return {
        "per_hour": [(int(h), str(et), str(a), int(n)) for h, et, a, n in per_hour],
        "top_actions": [(str(k), int(n)) for k, n in top_actions],
        "platforms": [(str(p), int(ok), int(bad)) for p, ok, bad in platforms],
        "failed_by_user": [(str(u), int(n)) for u, n in failed],
        "rows": int(totals[0]),
        "users": int(totals[1]),
        "first": float(totals[2]) if totals[2] is not None else None,
        "last": float(totals[3]) if totals[3] is not None else None,
    }


# -- SVG pieces --------------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(n: float) -> str:
    return f"{n:,.0f}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** (len(str(int(value))) - 1)
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * magnitude:
            return step * magnitude
    return 10.0 * magnitude


def area_over_time(per_hour: Sequence[tuple[int, str, str, int]], *, bin_hours: int = 3) -> str:
    """Stacked columns: events per `bin_hours` by area, over the whole landed range."""
    width, height, left, right, top, bottom = 1100, 280, 56, 16, 16, 40
    size = bin_hours * 3600
    bins: dict[int, dict[str, int]] = defaultdict(lambda: {"admin": 0, "vault": 0, "logins": 0})
    for hour, event_type, action, n in per_hour:
        area = catalog.AREA_OF.get((event_type, action), "vault")
        bins[hour - hour % size][area] += n
    if not bins:
        return _empty_chart("events over time", width)
    first, last = min(bins), max(bins)
    count = (last - first) // size + 1
    peak = _nice_max(max(sum(b.values()) for b in bins.values()))
    plot_w, plot_h = width - left - right, height - top - bottom
    col = plot_w / count
    parts = [_svg_open(width, height, "Events over time by area")]
    for i in range(5):  # grid and y labels
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7ec"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{_num(value)}</text>'
        )
    for k in range(count):
        start = first + k * size
        b = bins.get(start)
        x = left + k * col
        if b:
            y = top + plot_h
            for area in ("logins", "vault", "admin"):
                h = plot_h * b[area] / peak
                if h > 0:
                    y -= h
                    tip = f"{_time(start)}: {AREA_LABELS[area]} {_num(b[area])}"
                    parts.append(
                        f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(col - 1, 1):.1f}" height="{h:.1f}" '
                        f'fill="{AREA_COLORS[area]}"><title>{_e(tip)}</title></rect>'
                    )
        if start % 86_400 == 0 and x < width - right - 70:  # no label cut off at the right edge
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 5}" stroke="#6b7785"/>'
            )
            label = datetime.fromtimestamp(start, UTC).strftime("%a %d %b")
            parts.append(f'<text x="{x + 3:.1f}" y="{top + plot_h + 18}" class="axis">{_e(label)}</text>')
    for i, area in enumerate(("admin", "vault", "logins")):
        lx = left + 8 + i * 130
        parts.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{AREA_COLORS[area]}"/>')
        parts.append(f'<text x="{lx + 14}" y="{height - 5}" class="legend">{_e(AREA_LABELS[area])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def horizontal_bars(
    items: Sequence[tuple[str, int]],
    *,
    title: str,
    color: str = BAR,
    width: int = 540,
    label_width: int = 230,
) -> str:
    if not items:
        return _empty_chart(title, width)
    row, top = 24, 8
    height = top + row * len(items) + 8
    peak = max(n for _, n in items) or 1
    plot = width - label_width - 70
    parts = [_svg_open(width, height, title)]
    for i, (label, n) in enumerate(items):
        y = top + i * row
        w = max(plot * n / peak, 1)
        short = label if len(label) <= 34 else label[:33] + "…"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" class="label">{_e(short)}</text>'
        )
        parts.append(
            f'<rect x="{label_width}" y="{y + 3}" width="{w:.1f}" height="{row - 7}" rx="2" fill="{color}">'
            f"<title>{_e(label)}: {_num(n)}</title></rect>"
        )
        parts.append(f'<text x="{label_width + w + 6:.1f}" y="{y + 15}" class="value">{_num(n)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(
    items: Sequence[tuple[str, int, int]], *, title: str, names: tuple[str, str], width: int = 540
) -> str:
    """Horizontal bars split in two (e.g. successful / failed logins)."""
    if not items:
        return _empty_chart(title, width)
    label_width, row, top = 150, 24, 8
    height = top + row * len(items) + 30
    peak = max(a + b for _, a, b in items) or 1
    plot = width - label_width - 70
    parts = [_svg_open(width, height, title)]
    for i, (label, a, b) in enumerate(items):
        y = top + i * row
        wa, wb = plot * a / peak, plot * b / peak
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" class="label">{_e(label)}</text>'
        )
        parts.append(
            f'<rect x="{label_width}" y="{y + 3}" width="{max(wa, 1):.1f}" height="{row - 7}" fill="{BAR}">'
            f"<title>{_e(label)}: {_num(a)} {names[0]}</title></rect>"
        )
        if b:
            parts.append(
                f'<rect x="{label_width + wa:.1f}" y="{y + 3}" width="{max(wb, 1):.1f}" height="{row - 7}" '
                f'fill="{FAIL}"><title>{_e(label)}: {_num(b)} {names[1]}</title></rect>'
            )
        parts.append(
            f'<text x="{label_width + wa + wb + 6:.1f}" y="{y + 15}" class="value">{_num(a + b)}</text>'
        )
    ly = height - 14
    for i, (name, color) in enumerate(zip(names, (BAR, FAIL), strict=True)):
        lx = label_width + i * 110
        parts.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{ly + 9}" class="legend">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def rule_hits(rules: Sequence[dict[str, Any]], width: int = 1100) -> str:
    """One bar per rule that ran, split by what each alert row is about (see HIT_KINDS); rules with
    no hit are listed with a zero so the chart also shows what stayed quiet."""
    ran = [r for r in rules if r.get("status") == "ran"]
    if not ran:
        return _empty_chart("rule hits", width)
    label_width, row, top = 420, 24, 8
    height = top + row * len(ran) + 30
    peak = max((r.get("hits", 0) for r in ran), default=0) or 1
    plot = width - label_width - 90
    parts = [_svg_open(width, height, "Analytic rule hits")]
    for i, r in enumerate(ran):
        y = top + i * row
        attributed = r.get("attributed", {})
        name = str(r["name"]).removeprefix("NordPass - ")
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" class="label">{_e(name)}</text>'
        )
        x = float(label_width)
        for kind, color, what in HIT_KINDS:
            n = int(attributed.get(kind, 0))
            if n:
                w = plot * n / peak
                parts.append(
                    f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 7}" fill="{color}">'
                    f"<title>{_e(name)}: {n} {what}</title></rect>"
                )
                x += w
        if not r.get("hits"):
            parts.append(f'<rect x="{label_width}" y="{y + 3}" width="2" height="{row - 7}" fill="#d5dbe1"/>')
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}" class="value">{r.get("hits", 0)}</text>')
    ly = height - 14
    for i, (_, color, name) in enumerate(HIT_KINDS):
        lx = label_width + i * 200
        parts.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{ly + 9}" class="legend">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, title: str) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_e(title)}">'
    )


def _empty_chart(title: str, width: int) -> str:
    return f'{_svg_open(width, 40, title)}<text x="8" y="24" class="label">no {_e(title)} in the landed rows</text></svg>'


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S UTC")


# -- the page ----------------------------------------------------------------------------------------

CSS = f"""
body {{ margin: 0; background: #f4f6f8; color: #1d2733; {FONT}; }}
main {{ max-width: 1160px; margin: 0 auto; padding: 24px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }}
h2 {{ font-size: 16px; margin: 0 0 10px; }}
p.sub {{ margin: 0 0 18px; color: #55606e; }}
.tiles {{ display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px; margin-bottom: 16px; }}
.tile {{ background: #fff; border-radius: 8px; padding: 12px 14px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }}
.tile .v {{ font-size: 22px; font-weight: 600; }}
.tile .k {{ font-size: 12px; color: #55606e; }}
.tile.good .v {{ color: #25804a; }} .tile.bad .v {{ color: #b3261e; }}
.card {{ background: #fff; border-radius: 8px; padding: 16px; margin-bottom: 16px;
        box-shadow: 0 1px 2px rgba(0,0,0,.08); overflow-x: auto; }}
.row {{ display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }}
svg.chart {{ display: block; max-width: 100%; height: auto; }}
svg .axis, svg .legend, svg .value {{ font-size: 11px; fill: #55606e; {FONT}; }}
svg .label {{ font-size: 12px; fill: #1d2733; {FONT}; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
th, td {{ text-align: left; padding: 5px 8px; border-bottom: 1px solid #e3e7ec; vertical-align: top; }}
th {{ color: #55606e; font-weight: 600; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.ok {{ color: #25804a; }} .miss {{ color: #b3261e; }}
"""


def _tile(value: str, key: str, tone: str = "") -> str:
    return f'<div class="tile {tone}"><div class="v">{_e(value)}</div><div class="k">{_e(key)}</div></div>'


def render(result: dict[str, Any], data: dict[str, Any]) -> str:
    exact = result["missing"] == 0 and result["duplicates"] == 0 and result["unexpected"] == 0
    lag = result.get("final_lag_seconds")
    tiles = "".join(
        (
            _tile(_num(result["expected"]), "events expected (ground truth)"),
            _tile(_num(result["delivered"]), "rows delivered", "good" if exact else "bad"),
            _tile(str(result["duplicates"]), "duplicates", "good" if result["duplicates"] == 0 else "bad"),
            _tile(str(result["missing"]), "missing", "good" if result["missing"] == 0 else "bad"),
            _tile(f"{_num(result['windows'])} / {_num(result['pages'])}", "windows / pages"),
            _tile("-" if lag is None else f"{lag:,.0f} s", "lag after the last tick"),
        )
    )
    rule_names = {r["rule"]: str(r["name"]).removeprefix("NordPass - ") for r in result["rules"]}
    incidents = "".join(
        f"<tr><td>{_e(i['name'])}</td><td>{_e(i['description'])}</td><td class='n'>{i['tick']}</td>"
        f"<td class='{'ok' if i['detected_by'] else 'miss'}'>"
        f"{_e(', '.join(rule_names.get(k, k) for k in i['detected_by']) or 'no rule fired')}</td></tr>"
        for i in result["incidents"]
    )
    not_run = "".join(
        f"<tr><td>{_e(rule_names[r['rule']])}</td><td>{_e(r['status'])}</td><td>{_e(r.get('reason', ''))}</td></tr>"
        for r in result["rules"]
        if r["status"] != "ran"
    )
    ticks = "".join(
        f"<tr><td class='n'>{t['tick']}</td><td>{_e(t['phase'])}</td><td class='n'>{_num(t['new_events'])}</td>"
        f"<td class='n'>{_num(t['sent'])}</td><td class='n'>{t['windows']}</td><td class='n'>{_num(t['pages'])}</td>"
        f"<td class='n'>{'-' if t['lag_seconds'] is None else _num(t['lag_seconds'])}</td>"
        f"<td class='n'>{t['seconds']:.1f}</td><td>{_e(t['outcome'])}{'' if t['caught_up'] else ', backlog left'}</td></tr>"
        for t in result["ticks"]
    )
    health = "".join(
        f"<tr><td>{_e(_clock(h['TimeGenerated']))}</td><td><code>{_e(h['RunId'] or '-')}</code></td>"
        f"<td class='{'ok' if h['Outcome'] == 'ok' else 'miss'}'>{_e(h['Outcome'])}</td>"
        f"<td class='n'>{_num(h['EventsFetched'] or 0)}</td><td class='n'>{_num(h['EventsSent'] or 0)}</td>"
        f"<td class='n'>{'-' if h['LagSeconds'] is None else _num(h['LagSeconds'])}</td>"
        f"<td class='n'>{(h['DurationSeconds'] or 0):.1f}</td>"
        f"<td class='n'>{'-' if h['ConsecutiveFailures'] is None else h['ConsecutiveFailures']}</td>"
        f"<td>{_e(h['ErrorClass'] or '')}</td></tr>"
        for h in result.get("health", [])
    )
    page = result.get("connector_page") or {}
    page_status = (
        f"<b class='ok'>Connected</b>: a successful run at {_e(_clock(page['last_successful_run']))}"
        if page.get("connected")
        else "<b class='miss'>Disconnected</b>: no successful run in the last 30 minutes"
    )
    span = ""
    if data.get("first") is not None:
        span = f"event times {_time(data['first'])} to {_time(data['last'])}, {data['users']} accounts"
    failed = [(u, n) for u, n in data["failed_by_user"]]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>NordPass to Sentinel: sandbox demo report</title>
<style>{CSS}</style></head>
<body><main>
<h1>NordPass &rarr; Microsoft Sentinel: what landed</h1>
<p class="sub">Sandbox run {result["run"]} started {_e(result["started_at"])}; {_num(data["rows"])} rows in
<code>{_e(TABLE_NAME)}</code>, {_e(span)}. The connector's real timer function ran {len(result["ticks"])} ticks in
{result["seconds"]:.0f} s.</p>
<div class="tiles">{tiles}</div>
<div class="card"><h2>Events over time by area</h2>{area_over_time(data["per_hour"])}</div>
<div class="row">
<div class="card"><h2>Top actions</h2>{horizontal_bars(data["top_actions"], title="top actions")}</div>
<div class="card"><h2>Logins by platform</h2>{stacked_bars(data["platforms"], title="logins by platform", names=("successful", "failed"))}</div>
</div>
<div class="row">
<div class="card"><h2>Failed logins by user (last 24 hours)</h2>{horizontal_bars(failed, title="failed logins by user", color=FAIL)}</div>
<div class="card"><h2>Scripted incidents and the rules that caught them</h2>
<table><tr><th>incident</th><th>what happened</th><th>tick</th><th>detected by</th></tr>{incidents}</table>
{'<h2 style="margin-top:14px">Rules not run locally</h2><table>' + not_run + "</table>" if not_run else ""}
</div>
</div>
<div class="card"><h2>Analytic rule hits (rule KQL from the YAML, run with duckdb-kql over the landed rows)</h2>{rule_hits(result["rules"])}</div>
{demo_content.html_sections(result)}
<div class="card"><h2>Ticks</h2>
<table><tr><th>tick</th><th>phase</th><th>new events</th><th>sent</th><th>windows</th><th>pages</th><th>lag (s)</th><th>seconds</th><th>outcome</th></tr>{ticks}</table>
</div>
<div class="card"><h2>Connector health in Sentinel (<code>{_e(HEALTH_TABLE_NAME)}</code>, one row per run)</h2>
<p class="sub">Connector page status, from the page's own connectivity query over these rows: {page_status}.</p>
<table><tr><th>run ended</th><th>run</th><th>outcome</th><th>fetched</th><th>sent</th><th>lag (s)</th><th>seconds</th><th>failures in a row</th><th>error class</th></tr>{health}</table>
</div>
</main></body></html>
"""
