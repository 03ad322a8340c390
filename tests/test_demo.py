"""`python -m sandbox.demo` end to end, in a temporary state folder, checked against ground truth.

The demo runs as a subprocess, exactly as `make demo` starts it (a smaller history and fewer live
ticks, through the same code): it imports function_app, indexes it once and calls the timer
function. The checks do not trust the demo's own arithmetic: the expected EventIds are recomputed
here from the events the simulator served (the demo keeps them in the state folder), with the
harness's ground-truth helper, and compared with what the DuckDB file of the ingestion stand-in
holds. The HTML report is then opened in headless Chromium.
"""

from __future__ import annotations

import html
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from content import kql
from sandbox import demo, demo_content
from sandbox.azurite import AzuriteUnavailable
from tests.harness import expected_ids

REPO_ROOT = Path(__file__).resolve().parent.parent
# Same code path as `make demo`, with a lighter history (2 events/minute instead of 8) and two live
# ticks a second apart, to keep the test near 30 s.
SMALL = ["--per-minute", "2", "--live-ticks", "2", "--tick-interval", "1"]
CHROMIUM = demo.CHROMIUM
CHARTS = {
    "Events over time by area",
    "top actions",
    "logins by platform",
    "failed logins by user",
    "Analytic rule hits",
}


@dataclass
class DemoRun:
    state: Path
    stdout: str
    stderr: str
    returncode: int
    summary: dict[str, Any]  # summary.json as this run wrote it (a later run overwrites the file)


def _run_demo(state: Path, *extra: str) -> DemoRun:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.demo", "--state-dir", str(state), *SMALL, *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    summary_file = state / "summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if done.returncode == 0 else {}
    return DemoRun(state, done.stdout, done.stderr, done.returncode, summary)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoRun, DemoRun]:
    """A fresh run (with the 7-day backfill), then a second run that reuses the state."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed; the demo needs it for Azurite")
    state = tmp_path_factory.mktemp("demo-state")
    first = _run_demo(state, "--fresh")
    assert first.returncode == 0, first.stdout + first.stderr
    second = _run_demo(state)
    assert second.returncode == 0, second.stdout + second.stderr
    return first, second


def _ground_truth(state: Path) -> tuple[Counter[str], Counter[str], int]:
    """(expected EventIds, delivered EventIds, events older than the backfill) from the files."""
    events = demo.read_events(state / "nordpass-events.jsonl.gz")
    expected_from = json.loads((state / "demo-state.json").read_text(encoding="utf-8"))["expected_from"]
    inside = [e for e in events if e["timestamp"] >= expected_from]
    con = duckdb.connect(str(state / "ingestion.duckdb"), read_only=True)
    try:
        rows = con.execute('SELECT "EventId", count(*) FROM NordPassEventLogs_CL GROUP BY 1').fetchall()
    finally:
        con.close()
    return expected_ids(inside), Counter({str(k): int(n) for k, n in rows}), len(events) - len(inside)


def test_first_run_delivers_every_generated_event_exactly_once(demo_runs: tuple[DemoRun, DemoRun]) -> None:
    first, _ = demo_runs
    s = first.summary
    assert s["run"] == 1
    # The first tick is the 7-day backfill of the real timer function.
    reports = s["run_reports"]
    assert s["ticks"][0]["phase"] == "backfill"
    assert reports[0]["checkpoint_before"]["ledger_events"] == 0
    assert reports[0]["sent"] > 15_000
    assert [t["outcome"] for t in s["ticks"]] == ["ok"] * len(s["ticks"])
    assert len(s["ticks"]) >= 4  # backfill, two live ticks, drain
    assert s["missing"] == 0 and s["duplicates"] == 0 and s["unexpected"] == 0
    assert s["older_than_backfill"] > 0  # generated 7.5 days back: the oldest half day is not fetched
    assert "every generated event delivered exactly once" in first.stdout
    assert "duplicates 0" in first.stdout
    # The totals are the sums of the timer's own run reports, not a separate count.
    assert s["windows"] == sum(r["windows"] for r in reports)
    assert s["pages"] == sum(r["pages"] for r in reports)
    assert s["this_run_sent"] == sum(r["sent"] for r in reports) == s["delivered"]
    # One progress line per tick.
    assert len(re.findall(r"^tick +\d+ ", first.stdout, re.MULTILINE)) == len(s["ticks"])


def test_second_run_reuses_the_state_and_the_ground_truth_still_holds(
    demo_runs: tuple[DemoRun, DemoRun],
) -> None:
    first, second = demo_runs
    s1, s2 = first.summary, second.summary
    assert s2["run"] == 2
    assert "reused" in second.stdout
    # Continued from the checkpoint: no second backfill, nothing re-sent.
    assert s2["ticks"][0]["phase"] == "catch-up"
    assert s2["run_reports"][0]["checkpoint_before"]["ledger_events"] > 0
    assert s2["this_run_sent"] < 1_000
    assert s2["expected"] == s1["expected"] + s2["this_run_generated"]

    expected, delivered, older = _ground_truth(second.state)
    assert delivered == expected  # every EventId exactly as often as it was generated: no loss, no dup
    assert s2["expected"] == sum(expected.values())
    assert s2["delivered"] == sum(delivered.values())
    assert s2["older_than_backfill"] == older
    assert s2["duplicates"] == 0 and s2["missing"] == 0


def test_scripted_incidents_are_detected_by_their_rules(demo_runs: tuple[DemoRun, DemoRun]) -> None:
    for run in demo_runs:
        s = run.summary
        rules = {r["rule"]: r for r in s["rules"]}
        assert set(rules) == {p.stem.removeprefix("NordPass-") for p in kql.rule_paths()}
        incidents = {i["name"]: i for i in s["incidents"]}
        # The hunting scenarios that need history are planted into the first run's only.
        history = set(demo_content.HISTORY_SCENARIOS) if s["run"] > 1 else set()
        assert set(incidents) == set(demo.EXPECTED_RULES) - history
        for name, expected in demo.EXPECTED_RULES.items():
            if name not in incidents:
                continue
            for rule in expected:
                if rules[rule]["status"] == "ran":
                    assert rule in incidents[name]["detected_by"], (run.state, name, rule, rules[rule])
                else:
                    assert f"{rule}" not in incidents[name]["detected_by"]
        for rule in rules.values():
            if rule["status"] != "ran":
                assert rule["status"] == "not runnable locally" or rule["status"] == "error"
        # Alerts for this run's incidents are counted as such; an earlier run's are not.
        scripted = sum(r.get("attributed", {}).get("scripted", 0) for r in s["rules"])
        assert scripted >= sum(len(v) for v in demo.EXPECTED_RULES.values())


def test_each_tick_sent_its_health_row_and_the_connector_page_says_connected(
    demo_runs: tuple[DemoRun, DemoRun],
) -> None:
    """Checked against the stand-in's own health table, not the demo's arithmetic: one row per
    tick of this run, in tick order, with the timer's run id and counts."""
    for run in demo_runs:
        s = run.summary
        reports = s["run_reports"]
        assert [h["RunId"] for h in s["health"]] == [r["run_id"] for r in reports]
        assert [h["Outcome"] for h in s["health"]] == [r["outcome"] for r in reports] == ["ok"] * len(reports)
        assert [h["EventsSent"] for h in s["health"]] == [r["sent"] for r in reports]
        assert s["connector_page"]["connected"] is True
        assert s["connector_page"]["last_successful_run"] == s["health"][-1]["TimeGenerated"]
        # The stdout summary: one line per health row, then the page's status.
        assert (
            f"health     {len(reports)} rows in NordPassConnectorHealth_CL ({len(reports)} ok)" in run.stdout
        )
        assert len(re.findall(r"^  \d\d:\d\d:\d\d  ok +sent", run.stdout, re.MULTILINE)) == len(reports)
        assert "connector page: Connected (a successful run at " in run.stdout
        # The health rules ran on those rows and stayed quiet: the connector is running and healthy.
        rules = {r["rule"]: r for r in s["rules"]}
        for rule in ("ConnectorNotRunning", "ConnectorRunsFailing"):
            assert (rules[rule]["status"], rules[rule]["hits"]) == ("ran", 0)
    con = duckdb.connect(str(demo_runs[1].state / "ingestion.duckdb"), read_only=True)
    try:
        landed = con.execute('SELECT "RunId", "Outcome" FROM NordPassConnectorHealth_CL').fetchall()
    finally:
        con.close()
    ticks = sum(len(run.summary["ticks"]) for run in demo_runs)
    assert len(landed) == ticks, "every tick of both runs, no more"
    assert {run_id for run_id, _ in landed} == {
        h["RunId"] for run in demo_runs for h in run.summary["health"]
    }

    page = (demo_runs[1].state / "report.html").read_text(encoding="utf-8")
    assert "Connector health in Sentinel" in page and "NordPassConnectorHealth_CL" in page
    for h in demo_runs[1].summary["health"]:
        assert f"<code>{h['RunId']}</code>" in page
    assert "<b class='ok'>Connected</b>" in page


def test_asim_view_shows_the_scripted_attacks_normalized(demo_runs: tuple[DemoRun, DemoRun]) -> None:
    first, _ = demo_runs
    asim_view = first.summary["asim"]
    schemas = {s["schema"]: s for s in asim_view["schemas"]}
    assert {name: s["version"] for name, s in schemas.items()} == {
        "Authentication": "0.1.4",
        "UserManagement": "0.1.2",
        "AuditEvent": "0.1.2",
    }
    assert all(s["status"] == "ran" and s["rows"] > 100 for s in schemas.values())
    auth_types = {(b["event_type"], b["event_result"]) for b in schemas["Authentication"]["by_type"]}
    assert auth_types == {("Logon", "Success"), ("Logon", "Failure")}
    incidents = {i["name"]: i for i in first.summary["incidents"]}
    views = {(v["incident"], v["schema"]): v for v in asim_view["incidents"]}
    brute = views[("brute_force", "Authentication")]
    assert brute["types"] == {"Logon/Failure": 8} and brute["details"] == ["Incorrect password"]
    assert brute["ips"] == incidents["brute_force"]["ips"] and len(brute["targets"]) == 1
    spray = views[("password_spray", "Authentication")]
    assert spray["types"] == {"Logon/Failure": 12} and len(spray["targets"]) == 12
    assert spray["ips"] == incidents["password_spray"]["ips"]
    assert views[("bulk_mfa_reset", "UserManagement")]["types"] == {"UserModified/Success": 4}
    assert views[("vault_export", "AuditEvent")]["types"] == {"Read/Success": 1}
    assert "asim       Authentication 0.1.4:" in first.stdout
    assert re.search(
        r"^  brute_force +-> Authentication: 8 x Logon/Failure \(Incorrect password\)", first.stdout, re.M
    )


def test_hunting_queries_find_their_planted_scenarios(demo_runs: tuple[DemoRun, DemoRun]) -> None:
    for run in demo_runs:
        s = run.summary
        hunting = {h["query"]: h for h in s["hunting"]}
        assert set(hunting) == {
            p.stem.removeprefix("NordPass-") for p in kql.CONTENT_DIR.glob("hunting-queries/*.yaml")
        }
        assert all(h["status"] == "ran" for h in hunting.values()), hunting
        incidents = {i["name"]: i for i in s["incidents"]}
        planted = [name for name in demo_content.EXPECTED_HUNTING if name in incidents]
        assert len(planted) >= len(demo_content.EXPECTED_HUNTING) - len(demo_content.HISTORY_SCENARIOS)
        for name in planted:
            assert set(demo_content.EXPECTED_HUNTING[name]) <= set(incidents[name]["hunted_by"]), (
                run.state,
                name,
            )
        # What the sandbox cannot hold (30 days of history, Entra ID sign-ins) stays quiet and says why.
        for key, why in demo_content.NOT_PLANTED.items():
            assert hunting[key]["hits"] == 0 and hunting[key]["note"] == why
            assert why in run.stdout
        assert re.search(r"^hunting +11 hunting queries, 11 ran locally with duckdb-kql", run.stdout, re.M)
    first, _ = demo_runs
    assert re.search(r"^  slow_brute_force +-> Low and slow brute force", first.stdout, re.M)


def _shape(line: str) -> str:
    """A line with its figures (counts, times, ports) made alike, its spacing collapsed."""
    return re.sub(r"\d[\d,.:]*", "N", " ".join(line.split()))


def _label(line: str) -> str:
    """The summary's left column ("events", "this run", "== summary ...")."""
    return "== summary" if line.startswith("== summary") else line[:11].strip()


def _doc_sample(path: Path) -> list[str]:
    """The demo output a document quotes: its code block that holds the summary."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    (sample,) = [b for b in blocks if "== summary (sandbox run 1)" in "\n".join(b)]
    return sample


def _labels(lines: list[str]) -> list[str]:
    """The summary's sections, in order (tick and set-up lines left out)."""
    return [_label(line) for line in lines if line and not line.startswith((" ", "tick ", "sandbox:"))]


def _scenarios(lines: list[str], block: str) -> set[str]:
    """The scenario names listed under one summary label (`rules`, `asim`, `hunting`)."""
    out, inside = set(), False
    for line in lines:
        if line and not line.startswith(" "):
            inside = _label(line) == block
        elif inside and (found := re.match(r"^  (\w+) +-> ", line)):
            out.add(found.group(1))
    return out


@pytest.mark.parametrize("doc", ["README.md", "docs/demo.md"])
def test_the_docs_quote_the_demo_as_it_prints(demo_runs: tuple[DemoRun, DemoRun], doc: str) -> None:
    """The samples in the docs were copied from a real `make demo DEMO_ARGS=--fresh` and still have
    the shape of what it prints: every line the sample shows at the top level is a line the demo
    prints (figures aside), and the full sample has the summary's sections in the same order and the
    same planted scenarios. A change to the demo's output makes this fail until the docs follow."""
    first, _ = demo_runs
    printed = first.stdout.splitlines()
    sample = _doc_sample(REPO_ROOT / doc)
    shapes = {_shape(line) for line in printed}
    for line in sample:
        if not line or line.startswith(" ") or line.startswith(("sandbox: state in ", "report ")):
            continue  # indented detail, and the two lines that name this test's state folder
        assert _shape(line) in shapes, f"{doc}: {line!r} is not what the demo prints"
    assert not [line for line in sample if re.search(r"(?<![\w.])/(home|root|tmp|work)/", line)]
    if doc == "docs/demo.md":
        assert _labels(sample) == _labels(printed)
        # The planted scenarios, not background hits: those depend on how much history the run has.
        for block in ("rules", "asim", "hunting"):
            planted = _scenarios(printed, block) - {"background"}
            assert _scenarios(sample, block) - {"background"} == planted, block


def test_report_is_self_contained(demo_runs: tuple[DemoRun, DemoRun]) -> None:
    _, second = demo_runs
    page = (second.state / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page
    # Nothing is fetched: no external src/href, stylesheet import or url().
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert page.count("<svg") == len(CHARTS)
    assert str(second.state / "report.html") in second.stdout
    # The ASIM view and the hunting hits are tables of what the summary holds.
    assert "ASIM view: what the parsers return" in page and "<code>ASimAuthenticationNordPass</code>" in page
    assert "Hunting queries and the planted scenarios they found" in page
    for h in second.summary["hunting"]:
        assert html.escape(h["name"].removeprefix("NordPass - ")) in page


# -- the report in headless Chromium -----------------------------------------------------------------

# Injected into a copy of the report: the collector first (so it sees errors from anything after it),
# the probe last (it measures every chart once layout is done and writes the result into the DOM,
# which --dump-dom then prints).
COLLECTOR = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push('error: ' + e.message); });
var __consoleError = console.error;
console.error = function () { window.__errors.push('console: ' + Array.prototype.join.call(arguments, ' '));
  __consoleError.apply(console, arguments); };
</script>"""
PROBE = """<script>
(function () {
  var charts = Array.prototype.map.call(document.querySelectorAll('svg.chart'), function (svg) {
    var box = svg.getBoundingClientRect(), content = svg.getBBox();
    return {label: svg.getAttribute('aria-label'), width: box.width, height: box.height,
            contentWidth: content.width, contentHeight: content.height,
            shapes: svg.querySelectorAll('rect, line, path, circle, polyline').length,
            texts: svg.querySelectorAll('text').length};
  });
  // Every card: its own width, and how wide its content is (a card scrolls sideways, cutting off
  // what does not fit, when its content is wider than the card).
  var cards = Array.prototype.map.call(document.querySelectorAll('.card'), function (card) {
    var title = card.querySelector('h2');
    return {title: title ? title.textContent : '', width: card.getBoundingClientRect().width,
            clientWidth: card.clientWidth, scrollWidth: card.scrollWidth,
            tables: card.querySelectorAll('table').length};
  });
  var out = document.createElement('pre');
  out.id = 'test-probe';
  out.textContent = JSON.stringify({charts: charts, cards: cards, errors: window.__errors});
  document.body.appendChild(out);
})();
</script>"""


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMIUM,
            *demo.CHROMIUM_HEADLESS_FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.fixture
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"{CHROMIUM} is missing: `make test` installs it when run as root (scripts/ensure-chromium.sh)"
        )
    return CHROMIUM


def test_report_charts_render_in_headless_chromium(
    demo_runs: tuple[DemoRun, DemoRun], chromium: str, tmp_path: Path
) -> None:
    _, second = demo_runs
    page = (second.state / "report.html").read_text(encoding="utf-8")
    probed = tmp_path / "report-probed.html"
    probed.write_text(
        page.replace("<head>", "<head>" + COLLECTOR, 1).replace("</body>", PROBE + "</body>", 1),
        encoding="utf-8",
    )

    dumped = _chromium(tmp_path / "profile-dom", "--window-size=1280,2400", "--dump-dom", probed.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    found = re.search(r'<pre id="test-probe">(.*?)</pre>', dumped.stdout, re.DOTALL)
    assert found, dumped.stdout[-2000:]
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["errors"] == []
    charts = {c["label"]: c for c in probe["charts"]}
    assert set(charts) == CHARTS
    for label, chart in charts.items():
        assert chart["width"] > 300 and chart["height"] > 100, (label, chart)
        assert chart["contentWidth"] > 100 and chart["contentHeight"] > 50, (label, chart)
        assert chart["shapes"] >= 4 and chart["texts"] >= 3, (label, chart)
    # A week of activity in 3-hour columns, stacked by area.
    assert charts["Events over time by area"]["shapes"] >= 56
    # Nothing is cut off: no card's content (a table with a long "detected by" column, a chart) is
    # wider than the card.
    cards = {c["title"]: c for c in probe["cards"]}
    assert sum(c["tables"] for c in cards.values()) >= 5
    clipped = {
        t: (c["scrollWidth"], c["clientWidth"])
        for t, c in cards.items()
        if c["scrollWidth"] > c["clientWidth"]
    }
    assert clipped == {}
    # The incidents table, which grows with every scripted incident, has a full-width card.
    full = cards["Events over time by area"]["width"]
    assert cards["Scripted incidents and the rules that caught them"]["width"] == full
    # Chromium logs every console message and uncaught exception as "INFO:CONSOLE:<line>] ...".
    console = [
        line for line in dumped.stderr.splitlines() if "Uncaught" in line or re.search(r":CONSOLE[:(]", line)
    ]
    assert console == []

    # And the page as a person sees it: a real screenshot of the unmodified report.
    png = tmp_path / "report.png"
    shot = _chromium(
        tmp_path / "profile-shot",
        "--window-size=1280,2400",
        "--hide-scrollbars",
        f"--screenshot={png}",
        (second.state / "report.html").as_uri(),
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000  # charts and text, not a blank page
    assert not [line for line in shot.stderr.splitlines() if "Uncaught" in line]


# -- --keep-running: the stand-ins stay up for doctor and status ------------------------------------

# Variables through which the commands below could find an identity other than the settings file's.
IDENTITY_VARIABLES = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID")


def _lines_of(stream: Any) -> queue.Queue[str | None]:
    """A queue fed with the stream's lines by a thread (None at the end), so reading cannot hang."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _read_until(lines: queue.Queue[str | None], seen: list[str], marker: str) -> None:
    while True:
        line = lines.get(timeout=180)  # a guard against a hang, not a timing assertion
        assert line is not None, "the demo ended before printing " + repr(marker) + ":\n" + "\n".join(seen)
        seen.append(line)
        if marker in line:
            return


@pytest.mark.slow
def test_keep_running_serves_doctor_and_status_until_interrupted(
    demo_runs: tuple[DemoRun, DemoRun], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    shutil.copytree(demo_runs[1].state, state)  # the earlier runs' checkpoint and health record
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.demo", "--state-dir", str(state), *SMALL, "--keep-running"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        out = _lines_of(proc.stdout)
        _read_until(out, seen, "press Ctrl-C to stop them")
        settings = state / demo.SETTINGS_FILE
        assert f"sandbox: the stand-ins keep running; their settings are in {settings}:" in seen
        commands = [line.strip() for line in seen if " -m nordpass_connector " in line]
        python = Path(sys.executable)
        # As a person at the demo's prompt types it (the demo ran in the repository).
        python_shown = python.relative_to(REPO_ROOT) if python.is_relative_to(REPO_ROOT) else python
        assert commands == [
            f"{python_shown} -m nordpass_connector {command} --settings {settings}"
            for command in ("doctor", "status", "run --once")
        ]
        assert settings.stat().st_mode & 0o077 == 0, "the file holds sandbox secrets: owner only"
        values = json.loads(settings.read_text(encoding="utf-8"))["Values"]
        secrets = [values["NORDPASS_TOKEN"], values["IDENTITY_HEADER"]]

        # Exactly the printed commands, with nothing but the file to go on (no identity in the env).
        env = {k: v for k, v in os.environ.items() if k not in IDENTITY_VARIABLES}
        results = {}
        for command in commands[:2]:
            done = subprocess.run(
                command.split(),
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            results[command.split()[3]] = done
            for text in (done.stdout, done.stderr):
                assert "Traceback" not in text
                assert not any(secret in text for secret in secrets)
        doctor_run, status_run = results["doctor"], results["status"]
        assert doctor_run.returncode == 0, doctor_run.stdout + doctor_run.stderr
        assert doctor_run.stdout.splitlines()[-1] == "doctor: 6 passed, 0 failed, 0 skipped"
        assert doctor_run.stderr == ""
        assert status_run.returncode == 0, status_run.stdout + status_run.stderr
        status_lines = status_run.stdout.splitlines()
        assert status_lines[0].split() == ["instance", "default"]
        assert re.fullmatch(r"last run\s+ok at \S+ \(run [0-9a-f]{12}\)", status_lines[1]), status_lines
        assert status_lines[-1] == f"dead letters: 0 in table {demo.CHECKPOINT_TABLE}deadletters"

        started = [line for line in seen if line.startswith("sandbox: NordPass simulator ")][-1]
        simulator = re.search(r"NordPass simulator http://127\.0\.0\.1:(\d+)/", started)
        assert simulator, started
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        _read_until(out, seen, "sandbox: stand-ins stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in stderr and "Traceback" not in "\n".join(seen)
    assert not any(secret in stderr + "\n".join(seen) for secret in secrets)
    with socket.socket() as probe:  # stopped: nothing listens on the simulator's port any more
        assert probe.connect_ex(("127.0.0.1", int(simulator.group(1)))) != 0


def test_keep_running_does_not_go_with_real_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text('{"Values": {}}', encoding="utf-8")
    assert demo.main(["--settings", str(settings), "--keep-running"]) == 2
    assert "does not go with --settings" in _one_line(capsys.readouterr().err)


# -- friendly failures: one line saying what to do, non-zero exit ------------------------------------


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("demo: ")
    return lines[0]


def test_missing_settings_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--settings", str(tmp_path / "local.settings.json")]) == 2
    assert "copy local.settings.json.example" in _one_line(capsys.readouterr().err)


def test_port_in_use_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # --port-base N puts the NordPass simulator, the first port the demo takes, on N itself: a
        # neighbouring port someone else happens to hold cannot be reported first.
        assert demo.main(["--state-dir", str(tmp_path), "--port-base", str(port)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"port {port} (NordPass simulator)" in line and "already in use" in line
    assert "--port-base 0" in line


def test_a_later_port_in_use_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every port is checked before anything starts, not only the first: the ingestion stand-in's
    (base + 1) busy, with the base itself free."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with socket.socket() as probe:  # the base must be free for the stand-in's port to be reached
            try:
                probe.bind(("127.0.0.1", port - 1))
            except OSError:
                pytest.skip(f"port {port - 1} is in use here")
        assert demo.main(["--state-dir", str(tmp_path), "--port-base", str(port - 1)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"port {port}" in line and "already in use" in line


def test_missing_node_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "node" else "/usr/bin/" + name)
    assert demo.main(["--state-dir", str(tmp_path)]) == 2
    assert "node is missing: install Node.js 20" in _one_line(capsys.readouterr().err)


def test_npm_unreachable_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> None:
        raise AzuriteUnavailable(
            "npm could not install azurite@3.35.0: npm error A complete log of this run can be found in: /x.log"
        )

    monkeypatch.setattr(demo, "azurite_bin", lambda service, root=demo.REPO_ROOT: tmp_path / "absent")
    monkeypatch.setattr(demo, "ensure_installed", unreachable)
    assert demo.main(["--state-dir", str(tmp_path)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "npm could not install Azurite" in line and "registry reachable" in line
    assert "complete log" not in line


def test_missing_chromium_for_a_screenshot_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(demo.DemoError, match="apt-get install -y chromium"):
        demo.screenshot(tmp_path / "report.html", tmp_path / "report.png")
