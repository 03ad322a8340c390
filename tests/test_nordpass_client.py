"""NordPassClient against the simulator over real HTTP: paging, headers, retries, errors, secrecy."""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from nordpass_connector import USER_AGENT
from nordpass_connector.adapters.nordpass import DEFAULT_TIMEOUT, NordPassClient
from nordpass_connector.clock import SystemClock
from nordpass_connector.errors import (
    ConfigurationError,
    SourceAuthError,
    SourceProtocolError,
    SourceUnavailable,
    SourceUnreachable,
)
from nordpass_connector.ports import Page, Window
from nordpass_connector.retry import Deadline, Retrier, RetryLog, RetryPolicy
from sandbox.datagen import EventFactory
from sandbox.nordpass_sim import DAY, NordPassSimulator, RequestRecord
from tests.doubles import sleeps_of
from tests.fixtures.nordpass import FAST_POLICY

T0 = 1_750_000_000
WINDOW = Window(T0, T0 + 3600)
MakeClient = Callable[..., NordPassClient]


def _deadline(seconds: float = 10.0) -> Deadline:
    return Deadline.after(SystemClock(), seconds)


@pytest.fixture
def hour(nordpass_sim: NordPassSimulator, event_factory: EventFactory) -> list[dict[str, Any]]:
    events = event_factory.background(WINDOW.start, WINDOW.end, per_minute=4)  # ~240 events
    nordpass_sim.add(events)
    return events


def _read_window(client: NordPassClient, window: Window) -> tuple[list[Any], list[Page]]:
    pages: list[Page] = []
    for number in range(1, 1000):
        page = client.fetch_page(window, number, deadline=_deadline())
        pages.append(page)
        if not page.events:
            break
    return [e for p in pages for e in p.events], pages


def _multiset(events: list[Any]) -> Counter[bytes]:
    return Counter(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in events)


def _secret_free(text: str, token: str) -> None:
    assert token not in text
    assert token[:12] not in text
    assert "Bearer" not in text


# -- paging and the wire format ---------------------------------------------------------------


def test_reads_a_window_page_by_page(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient, hour: list[dict[str, Any]]
) -> None:
    client = make_nordpass_client(per_page=50)
    events, pages = _read_window(client, WINDOW)
    assert _multiset(events) == _multiset(hour)
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    assert pages[0].total == len(hour)
    assert pages[0].total_pages == -(-len(hour) // 50) == len(pages) - 1
    assert all(len(p.events) == 50 for p in pages[:-2])


def test_request_headers_and_body(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient, nordpass_token: str
) -> None:
    make_nordpass_client(per_page=77).fetch_page(WINDOW, 3, deadline=_deadline())
    (record,) = nordpass_sim.query_requests()
    assert record.authorized, "the raw token, without a Bearer prefix, in Authorization"
    assert record.path == "/activities/query" and record.query == ""
    assert record.headers["content-type"] == "application/json"
    assert record.headers["x-source"] == "MSSentinel"
    assert record.headers["user-agent"] == USER_AGENT
    assert record.body == {
        "timestamp_from": WINDOW.start,
        "timestamp_to": WINDOW.end,
        "page": 3,
        "per_page": 77,
    }


def test_timeout_defaults_are_explicit() -> None:
    assert (DEFAULT_TIMEOUT.connect, DEFAULT_TIMEOUT.read) == (10.0, 30.0)


@pytest.mark.parametrize("order", ["asc", "desc", "shuffled-but-stable"])
def test_every_sort_order_yields_the_whole_window(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient, hour: list[dict[str, Any]], order: str
) -> None:
    nordpass_sim.configure(order=order)
    events, _ = _read_window(make_nordpass_client(per_page=40), WINDOW)
    assert _multiset(events) == _multiset(hour)
    stamps = [e["timestamp"] for e in events]
    if order == "asc":
        assert stamps == sorted(stamps)
    elif order == "desc":
        assert stamps == sorted(stamps, reverse=True)
    else:
        assert stamps not in (sorted(stamps), sorted(stamps, reverse=True))


@pytest.mark.parametrize(
    ("from_inclusive", "to_inclusive"), [(True, True), (False, True), (True, False), (False, False)]
)
def test_inclusivity_knobs_are_what_the_client_sees(
    nordpass_sim: NordPassSimulator,
    make_nordpass_client: MakeClient,
    event_factory: EventFactory,
    from_inclusive: bool,
    to_inclusive: bool,
) -> None:
    at_start = event_factory.event("login", "user_login_successful", at=WINDOW.start)
    inside = event_factory.event("login", "user_login_successful", at=WINDOW.start + 60)
    at_end = event_factory.event("login", "user_login_successful", at=WINDOW.end)
    nordpass_sim.add([at_start, inside, at_end])
    nordpass_sim.configure(from_inclusive=from_inclusive, to_inclusive=to_inclusive)
    events, _ = _read_window(make_nordpass_client(), WINDOW)
    expected = [e for e, keep in ((at_start, from_inclusive), (inside, True), (at_end, to_inclusive)) if keep]
    assert events == expected


def test_server_clamp_of_per_page_is_visible_in_the_page(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient, hour: list[dict[str, Any]]
) -> None:
    nordpass_sim.configure(max_per_page=50)
    client = make_nordpass_client(per_page=100)
    first = client.fetch_page(WINDOW, 1, deadline=_deadline())
    assert len(first.events) == 50 and first.total_pages == -(-len(hour) // 50)
    assert nordpass_sim.query_requests()[0].body["per_page"] == 100
    events, _ = _read_window(client, WINDOW)
    assert _multiset(events) == _multiset(hour), "a short page is not the end"


def test_lone_surrogates_are_repaired_and_counted_not_refused(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient, hour: list[dict[str, Any]]
) -> None:
    cut = dict(hour[3], initiator="ana \U0001f34e")
    nordpass_sim.add([cut])
    nordpass_sim.configure(lone_surrogates=True)
    events, pages = _read_window(make_nordpass_client(), WINDOW)
    assert len(events) == len(hour) + 1
    repaired = [e for p in pages for e in p.repaired]
    assert repaired == [dict(cut, initiator="ana \ufffd")]
    # The same bytes read again decode to the same event, so its EventId is stable.
    again, _ = _read_window(make_nordpass_client(), WINDOW)
    assert _multiset(again) == _multiset(events)


def test_a_body_that_is_not_json_even_leniently_is_still_a_protocol_error(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient, hour: list[dict[str, Any]]
) -> None:
    nordpass_sim.fail_next("garbage", times=3)
    with pytest.raises(SourceProtocolError, match="not JSON"):
        make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline())


def test_concurrent_pages_share_one_client(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient, hour: list[dict[str, Any]]
) -> None:
    nordpass_sim.configure(latency=0.15)
    client = make_nordpass_client(per_page=20)
    pages = -(-len(hour) // 20)
    with ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(lambda n: client.fetch_page(WINDOW, n, deadline=_deadline()), range(1, pages + 1))
        )
    assert [p.number for p in results] == list(range(1, pages + 1))
    assert _multiset([e for p in results for e in p.events]) == _multiset(hour)
    # In parallel: a later page arrived at the server before an earlier one was answered.
    assert _most_in_flight(nordpass_sim.query_requests(), latency=0.15) > 1, (
        "pages must be fetched in parallel"
    )


# -- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_token_is_fatal_and_actionable(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient, nordpass_token: str, status: int
) -> None:
    nordpass_sim.configure(auth_status=status)
    with pytest.raises(SourceAuthError) as caught:
        make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline())
    error = caught.value
    assert str(status) in error.message and "127.0.0.1" in error.message
    assert "Admin Panel" in error.action and "NORDPASS_TOKEN" in error.action
    assert not error.retriable
    assert len(nordpass_sim.query_requests()) == 1, "no retry loop on a rejected token"
    _secret_free(error.describe(), nordpass_token)


def test_wrong_token_gets_401(nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient) -> None:
    with pytest.raises(SourceAuthError, match="401"):
        make_nordpass_client(token="another-token").fetch_page(WINDOW, 1, deadline=_deadline())


@pytest.mark.parametrize("token", ["", "two words", "line\nbreak", "tökén"])
def test_unsendable_tokens_are_refused_without_echo(token: str) -> None:
    retrier = Retrier(RetryPolicy(), SystemClock(), RetryLog())
    with pytest.raises(ConfigurationError) as caught:
        NordPassClient(
            endpoint_url="https://x.nordpass.com/activities/query",
            token=token,
            retrier=retrier,
            clock=SystemClock(),
        )
    assert "NORDPASS_TOKEN" in str(caught.value)
    if token:
        assert token not in str(caught.value)


# -- retries --------------------------------------------------------------------------------------


def test_429_honours_retry_after(
    nordpass_sim: NordPassSimulator,
    make_nordpass_client: MakeClient,
    nordpass_retrier: Retrier,
    hour: list[Any],
) -> None:
    nordpass_sim.configure(retry_after="0.3")
    nordpass_sim.fail_next("429-retry-after")
    started = time.monotonic()
    page = make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline())
    assert time.monotonic() - started >= 0.3
    assert page.events
    assert nordpass_retrier.log.snapshot() == {"nordpass:429": 1}


def test_429_without_retry_after_backs_off_briefly(
    nordpass_sim: NordPassSimulator,
    make_nordpass_client: MakeClient,
    nordpass_retrier: Retrier,
    hour: list[Any],
) -> None:
    nordpass_sim.fail_next("429", times=3)
    page = make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline())
    sleeps = sleeps_of(nordpass_retrier)
    assert len(sleeps) == 3 and max(sleeps) <= FAST_POLICY.max_delay, sleeps
    assert page.events and len(nordpass_sim.query_requests()) == 4
    assert nordpass_retrier.log.snapshot() == {"nordpass:429": 3}


def test_server_errors_are_retried(
    nordpass_sim: NordPassSimulator,
    make_nordpass_client: MakeClient,
    nordpass_retrier: Retrier,
    hour: list[Any],
) -> None:
    nordpass_sim.fail_next("500", "502", "503", "408")
    page = make_nordpass_client().fetch_page(WINDOW, 2, deadline=_deadline())
    assert page.number == 2 and page.events
    assert nordpass_retrier.log.snapshot() == {"nordpass:408": 1, "nordpass:5xx": 3}


def test_slow_response_times_out_and_is_retried(
    nordpass_sim: NordPassSimulator,
    make_nordpass_client: MakeClient,
    nordpass_retrier: Retrier,
    hour: list[Any],
) -> None:
    nordpass_sim.configure(slow_seconds=5)
    nordpass_sim.fail_next("slow")
    client = make_nordpass_client(timeout=httpx.Timeout(0.25, connect=1.0))
    page = client.fetch_page(WINDOW, 1, deadline=_deadline())
    # Timed out on the slow answer (it would have come after 5 s and counted no retry) and read again.
    assert page.events and nordpass_retrier.log.snapshot() == {"nordpass:timeout": 1}
    assert [r.fault for r in nordpass_sim.query_requests()] == ["slow", None]


def test_dropped_connection_is_retried(
    nordpass_sim: NordPassSimulator,
    make_nordpass_client: MakeClient,
    nordpass_retrier: Retrier,
    hour: list[Any],
) -> None:
    nordpass_sim.fail_next("drop", times=2)
    page = make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline())
    assert page.events
    assert nordpass_retrier.log.snapshot() == {"nordpass:connection": 2}
    assert [r.status for r in nordpass_sim.query_requests()] == [0, 0, 200]


def test_refused_connection_from_the_start_is_unreachable_after_a_few_attempts(
    make_nordpass_client: MakeClient, nordpass_retrier: Retrier
) -> None:
    # A port that was free a moment ago: nothing listens there.
    probe = NordPassSimulator().start()
    url, host = probe.url, f"127.0.0.1:{probe.port}"
    probe.stop()
    with pytest.raises(SourceUnreachable) as caught:
        make_nordpass_client(endpoint_url=url).fetch_page(WINDOW, 1, deadline=_deadline())
    assert caught.value.message == (
        f"could not connect to {host}: connection refused (3 attempts; it has not answered in this run)"
    )
    assert caught.value.retriable, "a NordPass outage must not need a person: the next tick retries"
    assert "NORDPASS_ENDPOINT_URL" in caught.value.action
    assert nordpass_retrier.log.snapshot() == {"nordpass:connection": 2}, "not the whole retry budget"


def test_a_host_name_that_does_not_resolve_is_unreachable(
    make_nordpass_client: MakeClient, nordpass_retrier: Retrier
) -> None:
    client = make_nordpass_client(endpoint_url="https://api-activities.nowhere.invalid/activities/query")
    with pytest.raises(SourceUnreachable, match="the host name does not resolve"):
        client.fetch_page(WINDOW, 1, deadline=_deadline())
    assert nordpass_retrier.log.snapshot() == {"nordpass:connection": 2}


def test_refused_connections_after_an_answer_are_retried_in_full(
    make_nordpass_client: MakeClient, nordpass_retrier: Retrier, nordpass_token: str
) -> None:
    # Once the host has answered in this run, a refused connection is a blip (a restarting load
    # balancer): the whole retry policy applies, as for resets and 5xx.
    sim = NordPassSimulator(token=nordpass_token).start()
    client = make_nordpass_client(endpoint_url=sim.url)
    try:
        assert client.fetch_page(WINDOW, 1, deadline=_deadline()).events == []
    finally:
        sim.stop()
    with pytest.raises(SourceUnavailable) as caught:
        client.fetch_page(WINDOW, 2, deadline=_deadline())
    assert not isinstance(caught.value, SourceUnreachable)
    assert "connection failed (connection refused) on attempt 5" in caught.value.message
    assert nordpass_retrier.log.snapshot() == {"nordpass:connection": 4}


@pytest.mark.parametrize("kind", ["garbage", "bad-shape", "no-data", "bad-gzip"])
def test_unusable_200_is_retried_twice_then_a_protocol_error(
    nordpass_sim: NordPassSimulator,
    make_nordpass_client: MakeClient,
    nordpass_retrier: Retrier,
    hour: list[Any],
    kind: str,
) -> None:
    nordpass_sim.fail_next(kind, times=2)
    assert make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline()).events
    assert nordpass_retrier.log.snapshot() == {"nordpass:protocol": 2}
    nordpass_sim.clear_log()
    nordpass_sim.fail_next(kind, times=5)
    with pytest.raises(SourceProtocolError, match=r"127\.0\.0\.1") as caught:
        make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline())
    assert len(nordpass_sim.query_requests()) == 3
    for event in hour[:20]:
        assert event["user"]["email"] not in caught.value.describe()


def test_exhausted_retries_are_unavailable_and_name_the_status(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient
) -> None:
    nordpass_sim.fail_next("503", times=10)
    with pytest.raises(SourceUnavailable) as caught:
        make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline())
    assert "HTTP 503" in caught.value.message and "127.0.0.1" in caught.value.message
    assert caught.value.retriable
    assert len(nordpass_sim.query_requests()) == 5  # FAST_POLICY.max_attempts


def test_client_errors_are_not_retried(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient, nordpass_retrier: Retrier
) -> None:
    with pytest.raises(SourceProtocolError, match="HTTP 400"):
        make_nordpass_client().fetch_page(Window(T0, T0 + 91 * DAY), 1, deadline=_deadline())
    with pytest.raises(SourceProtocolError, match="HTTP 404"):
        make_nordpass_client(endpoint_url=nordpass_sim.base_url + "/wrong/path").fetch_page(
            WINDOW, 1, deadline=_deadline()
        )
    assert len(nordpass_sim.requests) == 1  # the 404 never reached the query route
    assert nordpass_retrier.log.total() == 0


# -- the deadline ---------------------------------------------------------------------------------


def test_retry_after_beyond_the_deadline_gives_up_at_once(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient, nordpass_retrier: Retrier
) -> None:
    nordpass_sim.configure(retry_after="30")
    nordpass_sim.fail_next("429-retry-after")
    with pytest.raises(SourceUnavailable, match="429"):
        make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline(2.0))
    assert sleeps_of(nordpass_retrier) == []
    assert len(nordpass_sim.query_requests()) == 1


def test_a_slow_server_cannot_outlive_the_deadline(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient
) -> None:
    nordpass_sim.configure(slow_seconds=5)
    nordpass_sim.fail_next("slow", times=10)
    # The client's read timeout is 30 s and the slow answer comes after 5 s: only a request timeout
    # cut to the 0.6 s left of the budget ends this in SourceUnavailable instead of a page.
    with pytest.raises(SourceUnavailable):
        make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline(0.6))
    assert all(r.fault == "slow" and r.status == 0 for r in nordpass_sim.query_requests())


def test_an_expired_deadline_sends_nothing(
    nordpass_sim: NordPassSimulator, make_nordpass_client: MakeClient
) -> None:
    with pytest.raises(SourceUnavailable, match="budget"):
        make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline(0.0))
    assert nordpass_sim.query_requests() == []


# -- secrecy --------------------------------------------------------------------------------------


def test_token_and_event_data_never_reach_errors_or_logs(
    nordpass_sim: NordPassSimulator,
    make_nordpass_client: MakeClient,
    nordpass_token: str,
    hour: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    messages: list[str] = []
    scenarios: list[tuple[str, ...]] = [
        ("401",),
        ("403",),
        ("503",) * 5,
        ("garbage",) * 3,
        ("drop",) * 5,
        ("429",) * 5,
    ]
    for kinds in scenarios:
        nordpass_sim.fail_next(*kinds)
        client = make_nordpass_client()
        with pytest.raises((SourceAuthError, SourceUnavailable, SourceProtocolError)) as caught:
            client.fetch_page(WINDOW, 1, deadline=_deadline())
        messages += [str(caught.value), caught.value.describe(), repr(caught.value.args)]
        assert caught.value.__cause__ is None or nordpass_token not in str(caught.value.__cause__)
    make_nordpass_client().fetch_page(WINDOW, 1, deadline=_deadline())  # a success logs too
    text = "\n".join(messages) + "\n" + caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    assert "nordpass:" in caplog.text or "retrying" in caplog.text  # the retries were logged
    _secret_free(text, nordpass_token)
    for event in hour:
        assert event["user"]["email"] not in text
        assert event["organization_uuid"] not in text


def test_client_repr_and_headers_do_not_show_the_token(
    make_nordpass_client: MakeClient, nordpass_token: str
) -> None:
    client = make_nordpass_client()
    assert nordpass_token not in repr(client) and nordpass_token not in repr(vars(client))


def test_retrier_randomness_is_injected(
    nordpass_sim: NordPassSimulator, nordpass_token: str, hour: list[Any]
) -> None:
    # Two clients with equal seeds wait equally long: the jitter comes from the injected rng.
    waits = []
    for _ in range(2):
        clock = _RecordingClock()
        retrier = Retrier(RetryPolicy(base_delay=0.01), clock, RetryLog(), random.Random(42))
        with NordPassClient(
            endpoint_url=nordpass_sim.url, token=nordpass_token, retrier=retrier, clock=clock
        ) as client:
            nordpass_sim.fail_next("500", "502")
            client.fetch_page(WINDOW, 1, deadline=Deadline.after(clock, 10))
        waits.append(clock.sleeps)
    assert waits[0] == waits[1] and len(waits[0]) == 2


class _RecordingClock(SystemClock):
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        super().sleep(seconds)


def _most_in_flight(records: list[RequestRecord], *, latency: float) -> int:
    """The most requests the server held at once: each is held at least `latency` seconds after it
    arrives, so requests that arrived less than that apart overlapped."""
    arrivals = sorted(r.at for r in records)
    return max((sum(1 for t in arrivals if a <= t < a + latency) for a in arrivals), default=0)
