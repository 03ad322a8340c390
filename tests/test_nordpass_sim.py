"""The NordPass simulator's own contract, over real HTTP with a plain httpx client."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from sandbox.datagen import EventFactory
from sandbox.nordpass_sim import DAY, NordPassSimulator, RequestRecord

T0 = 1_750_000_000


def _ev(ts: int, n: int = 0) -> dict[str, Any]:
    return {"type": "login", "action": "user_login_successful", "timestamp": ts, "metadata": {"n": n}}


@pytest.fixture
def http() -> Any:
    with httpx.Client(timeout=10) as client:
        yield client


def _query(
    http: httpx.Client, sim: NordPassSimulator, token: str | None = None, **body: Any
) -> httpx.Response:
    headers = {"Authorization": token if token is not None else sim.token}
    return http.post(sim.url, content=orjson.dumps(body), headers=headers)


def _ns(resp: httpx.Response) -> list[int]:
    return [e["metadata"]["n"] for e in resp.json()["data"]]


# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "wrong", "Bearer {token}"])
def test_anything_but_the_raw_token_is_401_with_a_json_error(
    nordpass_sim: NordPassSimulator, http: httpx.Client, token: str
) -> None:
    resp = _query(http, nordpass_sim, token=token.format(token=nordpass_sim.token), page=1)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"
    (record,) = nordpass_sim.query_requests()
    assert record.authorized is False and record.status == 401
    assert "authorization" not in record.headers
    assert nordpass_sim.token not in repr(nordpass_sim.requests)


def test_auth_status_knob_simulates_a_revoked_token(
    nordpass_sim: NordPassSimulator, http: httpx.Client
) -> None:
    nordpass_sim.configure(auth_status=403)
    assert _query(http, nordpass_sim, page=1).status_code == 403


# -- response shape and windows -----------------------------------------------------------------


def test_page_shape_and_metadata(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    nordpass_sim.add([_ev(T0 + i, i) for i in range(25)])
    resp = _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 100, page=2, per_page=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["metadata"] == {"total": 25, "per_page": 10, "current_page": 2, "total_pages": 3}
    assert _ns(resp) == list(range(10, 20))
    last = _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 100, page=4, per_page=10).json()
    assert last["data"] == [] and last["metadata"]["total"] == 25
    record = nordpass_sim.query_requests()[0]
    assert (record.page, record.per_page, record.returned, record.total) == (2, 10, 10, 25)
    assert record.body == {"timestamp_from": T0, "timestamp_to": T0 + 100, "page": 2, "per_page": 10}


def test_no_bounds_means_the_last_seven_days(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    now = T0 + 30 * DAY
    nordpass_sim.now = lambda: float(now)
    nordpass_sim.add([_ev(now - 8 * DAY, 0), _ev(now - 6 * DAY, 1), _ev(now - 10, 2), _ev(now + 5, 3)])
    assert _ns(_query(http, nordpass_sim)) == [1, 2]
    # Only a lower bound: the upper one is "now".
    assert _ns(_query(http, nordpass_sim, timestamp_from=now - 9 * DAY)) == [0, 1, 2]


def test_span_over_90_days_is_rejected_or_clamped(
    nordpass_sim: NordPassSimulator, http: httpx.Client
) -> None:
    nordpass_sim.add([_ev(T0, 0), _ev(T0 + 90 * DAY + 1, 1)])
    resp = _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 90 * DAY + 1)
    assert resp.status_code == 400 and "90 days" in resp.json()["error"]["message"]
    assert _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 90 * DAY).status_code == 200
    nordpass_sim.configure(over_max_span="clamp")
    assert _ns(_query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 90 * DAY + 1)) == [1]


@pytest.mark.parametrize(
    "body",
    [{"page": 0}, {"per_page": 0}, {"timestamp_from": "1"}, {"timestamp_from": 1.5}, {"page": True}],
)
def test_malformed_requests_are_400(nordpass_sim: NordPassSimulator, http: httpx.Client, body: Any) -> None:
    assert _query(http, nordpass_sim, **body).status_code == 400


def test_a_body_that_is_not_a_json_object_is_400(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    resp = http.post(nordpass_sim.url, content=b"not json", headers={"Authorization": nordpass_sim.token})
    assert resp.status_code == 400


@pytest.mark.parametrize(
    ("from_inclusive", "to_inclusive", "expected"),
    [(True, True, [0, 1, 2, 3]), (False, True, [2, 3]), (True, False, [0, 1, 2]), (False, False, [2])],
)
def test_bound_inclusivity_knobs(
    nordpass_sim: NordPassSimulator,
    http: httpx.Client,
    from_inclusive: bool,
    to_inclusive: bool,
    expected: list[int],
) -> None:
    nordpass_sim.add([_ev(T0, 0), _ev(T0, 1), _ev(T0 + 5, 2), _ev(T0 + 10, 3), _ev(T0 + 11, 4)])
    nordpass_sim.configure(from_inclusive=from_inclusive, to_inclusive=to_inclusive)
    assert _ns(_query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 10)) == expected


# -- ordering and paging ------------------------------------------------------------------------


def _all_pages(http: httpx.Client, sim: NordPassSimulator, per_page: int) -> list[list[int]]:
    pages = []
    for page in range(1, 100):
        got = _ns(_query(http, sim, timestamp_from=T0, timestamp_to=T0 + 1000, page=page, per_page=per_page))
        if not got:
            return pages
        pages.append(got)
    raise AssertionError("paging did not end")


def test_sort_orders(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    # Several events per second, to check the tie order too.
    nordpass_sim.add([_ev(T0 + i // 3, i) for i in range(30)])
    asc = [n for p in _all_pages(http, nordpass_sim, 7) for n in p]
    assert asc == list(range(30))
    nordpass_sim.configure(order="desc")
    assert [n for p in _all_pages(http, nordpass_sim, 7) for n in p] == list(reversed(range(30)))
    nordpass_sim.configure(order="shuffled-but-stable")
    first = _all_pages(http, nordpass_sim, 7)
    assert first == _all_pages(http, nordpass_sim, 7), "stable across reads"
    flat = [n for p in first for n in p]
    assert sorted(flat) == list(range(30)) and flat != list(range(30))
    # A reset simulator shuffles exactly like a fresh one (tests sharing a server stay independent).
    nordpass_sim.reset()
    nordpass_sim.add([_ev(T0 + i // 3, i) for i in range(30)])
    nordpass_sim.configure(order="shuffled-but-stable")
    assert _all_pages(http, nordpass_sim, 7) == first
    nordpass_sim.configure(order="shuffled")
    a = _ns(_query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 1000, page=1, per_page=30))
    b = _ns(_query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 1000, page=1, per_page=30))
    assert sorted(a) == sorted(b) == list(range(30)) and a != b


def test_max_per_page_clamps_silently(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    nordpass_sim.add([_ev(T0 + i, i) for i in range(120)])
    nordpass_sim.configure(max_per_page=50)
    body = _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 1000, page=1, per_page=100).json()
    assert len(body["data"]) == 50
    assert body["metadata"] == {"total": 120, "per_page": 50, "current_page": 1, "total_pages": 3}


def test_hidden_page_cap_keeps_announcing_the_requested_page_size(
    nordpass_sim: NordPassSimulator, http: httpx.Client
) -> None:
    nordpass_sim.add([_ev(T0 + i, i) for i in range(120)])
    nordpass_sim.configure(max_per_page=50, hide_page_cap=True)
    body = _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 1000, page=1, per_page=100).json()
    assert len(body["data"]) == 50
    assert body["metadata"] == {"total": 120, "per_page": 100, "current_page": 1, "total_pages": 2}
    assert len(_all_pages(http, nordpass_sim, 100)) == 3, "the data still takes three pages"


def test_repeated_and_short_pages_fire_as_often_as_asked(
    nordpass_sim: NordPassSimulator, http: httpx.Client
) -> None:
    nordpass_sim.add([_ev(T0 + i, i) for i in range(12)])
    nordpass_sim.configure(repeat_page=2)  # once
    assert _all_pages(http, nordpass_sim, 4) == [[0, 1, 2, 3], [0, 1, 2, 3], [8, 9, 10, 11]]
    assert _all_pages(http, nordpass_sim, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    nordpass_sim.configure(repeat_page=None, short_page=2, short_by=1, short_page_times=None)
    for _ in range(2):
        body = _query(
            http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 1000, page=2, per_page=4
        ).json()
        assert [e["metadata"]["n"] for e in body["data"]] == [4, 5, 6]
        assert body["metadata"]["total"] == 12, "the total stays right"
    assert {r.fault for r in nordpass_sim.query_requests()} >= {"repeat-page", "short-page"}
    with pytest.raises(ValueError, match="repeat_page"):
        nordpass_sim.configure(repeat_page=1)


def test_lone_surrogates_cut_astral_characters(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    nordpass_sim.add([dict(_ev(T0, 0), initiator="ana \U0001f34e x")])
    nordpass_sim.configure(lone_surrogates=True)
    raw = _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 10, page=1).content
    assert b'"ana \\ud83c x"' in raw
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


def test_inserts_between_pages_shift_offset_pages(
    nordpass_sim: NordPassSimulator, http: httpx.Client
) -> None:
    nordpass_sim.add([_ev(T0 + 10 + i, i) for i in range(10)])

    def insert_before_page_two(record: RequestRecord) -> None:
        if record.body and record.body.get("page") == 2:
            nordpass_sim.add([_ev(T0, 100)])  # older than everything: shifts every page by one

    nordpass_sim.on_request = insert_before_page_two
    pages = _all_pages(http, nordpass_sim, 5)
    assert pages[0] == [0, 1, 2, 3, 4]
    assert pages[1] == [4, 5, 6, 7, 8], "the live set moved: page 2 repeats the last event of page 1"
    assert pages[2] == [9]


def test_late_events_become_visible_at_their_time(
    nordpass_sim: NordPassSimulator, http: httpx.Client
) -> None:
    clock = [1000.0]
    nordpass_sim.now = lambda: clock[0]
    nordpass_sim.add([_ev(T0, 0)])
    nordpass_sim.add([_ev(T0 - 5, 1)], visible_at=1010.0)
    assert (nordpass_sim.visible_count(), nordpass_sim.pending_count()) == (1, 1)
    window = {"timestamp_from": T0 - 100, "timestamp_to": T0 + 100}
    assert _ns(_query(http, nordpass_sim, **window)) == [0]
    clock[0] = 1010.0
    assert _ns(_query(http, nordpass_sim, **window)) == [1, 0]
    assert nordpass_sim.pending_count() == 0


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["429", "408", "500", "502", "503", "401", "403"])
def test_scripted_status_faults(nordpass_sim: NordPassSimulator, http: httpx.Client, kind: str) -> None:
    nordpass_sim.fail_next(kind)
    resp = _query(http, nordpass_sim, page=1)
    assert resp.status_code == int(kind)
    assert "retry-after" not in resp.headers
    assert _query(http, nordpass_sim, page=1).status_code == 200, "a scripted fault is used once"
    assert [r.fault for r in nordpass_sim.query_requests()] == [kind, None]


def test_429_with_retry_after(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    nordpass_sim.configure(retry_after="7")
    nordpass_sim.fail_next("429-retry-after", times=2)
    assert nordpass_sim.pending_faults() == ["429-retry-after", "429-retry-after"]
    resp = _query(http, nordpass_sim)
    assert (resp.status_code, resp.headers["retry-after"]) == (429, "7")


@pytest.mark.parametrize(
    ("kind", "check"), [("garbage", "not-json"), ("bad-shape", "shape"), ("no-data", "no-data")]
)
def test_unusable_200_bodies(
    nordpass_sim: NordPassSimulator, http: httpx.Client, kind: str, check: str
) -> None:
    nordpass_sim.add([_ev(T0, 0)])
    nordpass_sim.fail_next(kind)
    resp = _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 1)
    assert resp.status_code == 200
    if check == "not-json":
        with pytest.raises(ValueError):
            resp.json()
    elif check == "shape":
        assert not isinstance(resp.json()["data"], list)
    else:
        assert "data" not in resp.json()


def test_dropped_connection_gets_no_response(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    nordpass_sim.fail_next("drop")
    with pytest.raises(httpx.TransportError):
        _query(http, nordpass_sim)
    assert _query(http, nordpass_sim).status_code == 200
    assert [r.status for r in nordpass_sim.query_requests()] == [0, 200]


def test_slow_fault_delays_the_answer(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    nordpass_sim.configure(slow_seconds=3)
    nordpass_sim.fail_next("slow")
    with pytest.raises(httpx.ReadTimeout):
        http.post(nordpass_sim.url, json={}, headers={"Authorization": nordpass_sim.token}, timeout=0.2)
    assert [(r.fault, r.status) for r in nordpass_sim.query_requests()] == [("slow", 0)]  # never answered


def test_fault_rate_is_seeded(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    def run() -> list[int]:
        nordpass_sim.configure(fault_rate=0.5, fault_seed=3, fault_kinds=["500", "503"])
        return [_query(http, nordpass_sim).status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert {200, 500, 503} <= set(first)


def test_unknown_knobs_and_faults_are_refused(nordpass_sim: NordPassSimulator) -> None:
    with pytest.raises(ValueError):
        nordpass_sim.configure(colour="blue")
    with pytest.raises(ValueError):
        nordpass_sim.configure(order="random")
    with pytest.raises(ValueError):
        nordpass_sim.fail_next("418")


# -- concurrency, latency, scale ----------------------------------------------------------------


def test_latency_overlaps_across_concurrent_requests(nordpass_sim: NordPassSimulator) -> None:
    nordpass_sim.add([_ev(T0 + i, i) for i in range(200)])
    nordpass_sim.configure(latency=0.2)
    limits = httpx.Limits(max_connections=20)
    with httpx.Client(limits=limits, timeout=10) as client, ThreadPoolExecutor(20) as pool:
        pages = list(
            pool.map(
                lambda p: _ns(
                    _query(
                        client, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 999, page=p, per_page=10
                    )
                ),
                range(1, 21),
            )
        )
    assert sorted(n for page in pages for n in page) == list(range(200))
    # Each request is held 200 ms after it arrives; requests queued one after another would arrive
    # at least that far apart, so arrivals closer than that were served together.
    arrivals = sorted(r.at for r in nordpass_sim.query_requests())
    together = max(sum(1 for t in arrivals if a <= t < a + 0.2) for a in arrivals)
    assert together > 1, "20 pages must overlap, not queue"


def test_large_store_pages_in_bounded_memory(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    # (How fast the simulator serves a big store shows in `make bench`; a test only checks behaviour.)
    count = 300_000
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    nordpass_sim.add(
        {"type": "t", "action": "a", "timestamp": T0 + i // 5, "metadata": {"n": i}} for i in range(count)
    )
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 400, f"the store should hold ~300 B per event, grew {grown_mib:.0f} MiB"
    assert nordpass_sim.visible_count() == count
    for page in (1, 500, 2999):
        resp = _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + DAY, page=page, per_page=100)
        assert resp.json()["metadata"]["total"] == count
        assert _ns(resp)[0] == (page - 1) * 100
    # A small insert into a big store lands in its place (the store stays sorted by time).
    nordpass_sim.add([_ev(T0 + 100, -1)])
    resp = _query(http, nordpass_sim, timestamp_from=T0 + 100, timestamp_to=T0 + 100, per_page=10)
    assert -1 in _ns(resp) and resp.json()["metadata"]["total"] == 6


def test_concurrent_adds_while_serving(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            nordpass_sim.add([_ev(T0 + i % 50, i)])
            i += 1
            time.sleep(0.001)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        totals = [
            _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 100).json()["metadata"]["total"]
            for _ in range(15)
        ]
    finally:
        stop.set()
        thread.join()
    assert totals == sorted(totals) and totals[-1] > totals[0]


# -- control routes -----------------------------------------------------------------------------


def test_control_routes_drive_the_simulator(nordpass_sim: NordPassSimulator, http: httpx.Client) -> None:
    ctl = nordpass_sim.control_url
    resp = http.post(ctl + "/configure", json={"order": "desc", "max_per_page": 2})
    assert resp.status_code == 200 and resp.json()["order"] == "desc"
    assert http.post(ctl + "/configure", json={"order": "sideways"}).status_code == 400
    added = http.post(ctl + "/events", json={"events": [_ev(T0, 0), _ev(T0 + 1, 1), _ev(T0 + 2, 2)]}).json()
    assert added == {"added": 3, "visible": 3}
    assert http.post(ctl + "/fail", json={"kinds": ["503"]}).json() == {"pending": ["503"]}
    assert _query(http, nordpass_sim).status_code == 503
    body = _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 5).json()
    assert _ns_from(body) == [2, 1]
    log = http.get(ctl + "/requests").json()
    assert [r["status"] for r in log] == [503, 200]
    assert nordpass_sim.token not in orjson.dumps(log).decode()
    state = http.get(ctl + "/state").json()
    assert state["visible"] == 3 and state["knobs"]["max_per_page"] == 2
    assert http.post(ctl + "/reset").status_code == 204
    assert nordpass_sim.visible_count() == 0 and nordpass_sim.knobs.order == "asc"


def _ns_from(body: dict[str, Any]) -> list[int]:
    return [e["metadata"]["n"] for e in body["data"]]


def test_command_line_serves_generated_data() -> None:
    env = {**os.environ, "NORDPASS_SIM_TOKEN": "cli-token"}
    argv = ["--port", "0", "--seed", "3", "--days", "0.002", "--live", "--per-minute", "600"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.nordpass_sim", *argv], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("NORDPASS_ENDPOINT_URL=http://127.0.0.1:")
        url = line.split("=", 1)[1]
        resp = httpx.post(url, json={"page": 1, "per_page": 10}, headers={"Authorization": "cli-token"})
        assert resp.status_code == 200
        body = resp.json()
        assert len(body["data"]) == 10 and body["metadata"]["total"] > 500
        assert httpx.post(url, json={}, headers={"Authorization": "sim-token"}).status_code == 401
        state_url = url.replace("/activities/query", "/_sim/state")
        before = httpx.get(state_url).json()["visible"]
        deadline = time.monotonic() + 5
        while httpx.get(state_url).json()["visible"] == before:
            assert time.monotonic() < deadline, "--live adds events every second"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_events_round_trip_unchanged(
    nordpass_sim: NordPassSimulator, http: httpx.Client, event_factory: EventFactory
) -> None:
    events = event_factory.background(T0, T0 + 600, per_minute=30)
    nordpass_sim.add(events)
    body = _query(http, nordpass_sim, timestamp_from=T0, timestamp_to=T0 + 600, per_page=1000).json()
    assert body["data"] == events
