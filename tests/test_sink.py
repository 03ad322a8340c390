"""IngestionSink with the REAL LogsIngestionClient and the REAL ManagedIdentityCredential, against the
HTTPS Logs Ingestion stand-in and the fake managed-identity endpoint."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pytest
from azure.monitor.ingestion import LogsIngestionClient

from nordpass_connector.adapters.ingestion import IngestionSink, build_logs_client, check_upload
from nordpass_connector.batching import pack
from nordpass_connector.clock import SystemClock
from nordpass_connector.errors import SinkAuthError, SinkConfigError, SinkRejected, SinkUnavailable
from nordpass_connector.isotime import iso_utc
from nordpass_connector.ports import Batch, Delivery, SetAsideCode
from nordpass_connector.retry import Deadline, Retrier
from sandbox.ingestion import IngestionStandIn
from sandbox.token_endpoint import TokenEndpoint
from tests.doubles import sleeps_of

MARKER = "row-content-marker-5f2c"


def make_rows(n: int, *, pad: int = 100, start: int = 0) -> list[dict[str, Any]]:
    now = int(time.time())
    return [
        {
            "TimeGenerated": iso_utc(now - 60),
            "timestamp": now - 60,
            "event_type": "vault",
            "action": "item_created",
            "user_uuid": f"user-{i}",
            "user_email": f"user{i}@example.com",
            "initiator": f"user{i}@example.com",
            "organization_uuid": "org-1",
            "metadata": {"note": MARKER, "pad": "x" * pad},
            "EventId": f"{i + start:032x}-0",
            "EventTime": iso_utc(now - 60),
            "OriginalUserUuid": None,
            "OriginalUserEmail": None,
            "AdditionalFields": None,
        }
        for i in range(n)
    ]


def one_batch(rows: list[dict[str, Any]], limit: int = 1_000_000) -> Batch:
    (batch,) = pack(rows, max_body_bytes=limit)
    assert isinstance(batch, Batch)
    return batch


def deadline(seconds: float = 20.0) -> Deadline:
    return Deadline.after(SystemClock(), seconds)


def sink_for(
    client: LogsIngestionClient, stand_in: IngestionStandIn, retrier: Retrier, **kwargs: Any
) -> IngestionSink:
    return IngestionSink(
        client,
        rule_id=kwargs.pop("rule_id", stand_in.dcr_immutable_id),
        stream_name=kwargs.pop("stream_name", stand_in.stream_name),
        retrier=retrier,
        **kwargs,
    )


@pytest.fixture
def sink(
    logs_client: LogsIngestionClient, ingestion: IngestionStandIn, fast_retrier: Retrier
) -> IngestionSink:
    return sink_for(logs_client, ingestion, fast_retrier)


def assert_all_delivered(delivery: Delivery, n: int) -> None:
    assert delivery.error is None, delivery.error
    assert delivery.rejected == []
    assert sorted(delivery.delivered) == list(range(n))


# -- success paths -------------------------------------------------------------------------------


def test_batch_is_delivered_gzipped_with_one_token_fetch(
    sink: IngestionSink, ingestion: IngestionStandIn, token_endpoint: TokenEndpoint
) -> None:
    batches = [b for b in pack(make_rows(300), max_body_bytes=30_000) if isinstance(b, Batch)]
    assert len(batches) > 3
    total = 0
    for batch in batches:
        delivery = sink.send(batch, deadline=deadline())
        assert_all_delivered(delivery, len(batch.rows))
        assert delivery.requests == 1
        total += len(batch.rows)
    assert ingestion.accepted_rows == total == 300
    calls = ingestion.calls
    assert all(c.status == 204 and c.headers["content-encoding"] == "gzip" for c in calls)
    assert all(c.wire_bytes < c.raw_bytes <= 30_000 for c in calls)
    assert all(c.api_version == "2023-01-01" and c.headers["authorization"] == "<redacted>" for c in calls)
    assert len({c.headers["x-ms-client-request-id"] for c in calls}) == len(calls)
    # The managed identity was asked once, for the Monitor audience: the token is cached.
    (token_request,) = token_endpoint.requests
    assert token_request.resource == "https://monitor.azure.com"
    assert token_request.identity_header_ok and token_request.api_version == "2019-08-01"


def test_rows_land_with_declared_columns_only(sink: IngestionSink, ingestion: IngestionStandIn) -> None:
    rows = make_rows(3)
    for row in rows:
        row["Unexpected"] = "dropped"
        row["eventid"] = "wrong case"
    delivery = sink.send(one_batch(rows), deadline=deadline())
    assert_all_delivered(delivery, 3)
    stored = ingestion.rows()
    assert len(stored) == 3
    assert all("Unexpected" not in r and "eventid" not in r for r in stored)
    assert {r["EventId"] for r in stored} == {r["EventId"] for r in rows}
    assert ingestion.kql("NordPassEventLogs_CL | where metadata.note == '" + MARKER + "' | count") == [(3,)]


def test_raw_body_is_sent_when_gzip_would_exceed_the_limit(
    logs_client: LogsIngestionClient, ingestion: IngestionStandIn, fast_retrier: Retrier
) -> None:
    sink = sink_for(logs_client, ingestion, fast_retrier, max_body_bytes=20)
    batch = Batch([{"a": 1}], b'[{"a":1}]')  # gzip adds ~20 bytes of header: bigger than raw
    assert_all_delivered(sink.send(batch, deadline=deadline()), 1)
    (call,) = ingestion.calls
    assert "content-encoding" not in call.headers and call.wire_bytes == call.raw_bytes == 9


def test_oversized_batch_is_split_before_sending(
    logs_client: LogsIngestionClient, ingestion: IngestionStandIn, fast_retrier: Retrier
) -> None:
    sink = sink_for(logs_client, ingestion, fast_retrier, max_body_bytes=5_000)
    batch = one_batch(make_rows(40))  # ~12 KB: over this sink's limit
    delivery = sink.send(batch, deadline=deadline())
    assert_all_delivered(delivery, 40)
    assert delivery.delivered == list(range(40)), "order is kept"
    assert all(c.raw_bytes <= 5_000 and c.status == 204 for c in ingestion.calls)


def test_413_splits_in_halves_and_resends(sink: IngestionSink, ingestion: IngestionStandIn) -> None:
    ingestion.set_max_request_bytes(3_000)
    batch = one_batch(make_rows(40))
    delivery = sink.send(batch, deadline=deadline())
    assert_all_delivered(delivery, 40)
    assert delivery.delivered == list(range(40))
    statuses = [c.status for c in ingestion.calls]
    assert statuses.count(413) >= 1 and statuses.count(204) >= 4
    assert ingestion.accepted_rows == 40 and not ingestion.duplicates()


def test_single_row_413_is_rejected_and_the_rest_delivered(
    sink: IngestionSink, ingestion: IngestionStandIn
) -> None:
    ingestion.set_max_request_bytes(1_000)
    rows = make_rows(4)
    rows[2]["metadata"]["pad"] = "y" * 2_000
    delivery = sink.send(one_batch(rows), deadline=deadline())
    assert delivery.error is None
    assert sorted(delivery.delivered) == [0, 1, 3]
    ((index, reason, code),) = delivery.rejected
    assert index == 2 and "413" in reason and "bytes" in reason and code == "oversize"


def test_oversize_single_row_batch_is_rejected_without_a_request(
    logs_client: LogsIngestionClient, ingestion: IngestionStandIn, fast_retrier: Retrier
) -> None:
    sink = sink_for(logs_client, ingestion, fast_retrier, max_body_bytes=1_000)
    row = make_rows(1, pad=3_000)[0]
    body = orjson.dumps([row])
    delivery = sink.send(Batch([row], body), deadline=deadline())
    assert delivery.rejected == [
        (0, f"record is {len(body):,} bytes, over the 1,000-byte request limit", SetAsideCode.OVERSIZE)
    ]
    assert delivery.requests == 0 and ingestion.calls == []


# -- retries -------------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(
    sink: IngestionSink, ingestion: IngestionStandIn, fast_retrier: Retrier
) -> None:
    ingestion.throttle(retry_after="0.3", times=1)
    started = time.monotonic()
    delivery = sink.send(one_batch(make_rows(5)), deadline=deadline())
    assert_all_delivered(delivery, 5)
    assert time.monotonic() - started >= 0.3
    assert delivery.requests == 2
    assert fast_retrier.log.snapshot() == {"ingestion:429": 1}


def test_429_without_retry_after_is_retried(
    sink: IngestionSink, ingestion: IngestionStandIn, fast_retrier: Retrier
) -> None:
    ingestion.throttle(retry_after=None, times=2)
    delivery = sink.send(one_batch(make_rows(5)), deadline=deadline())
    assert_all_delivered(delivery, 5)
    assert [c.status for c in ingestion.calls] == [429, 429, 204]
    assert fast_retrier.log.snapshot() == {"ingestion:429": 2}


def test_persistent_429_ends_errored_within_attempts(
    sink: IngestionSink, ingestion: IngestionStandIn
) -> None:
    ingestion.throttle(retry_after=None, times=None)
    delivery = sink.send(one_batch(make_rows(5)), deadline=deadline())
    assert isinstance(delivery.error, SinkUnavailable)
    assert delivery.delivered == [] and delivery.rejected == []
    assert delivery.requests == 4  # RetryPolicy.max_attempts of the fixture
    assert ingestion.accepted_rows == 0


def test_retry_after_beyond_the_deadline_is_not_waited_for(
    sink: IngestionSink, ingestion: IngestionStandIn, fast_retrier: Retrier
) -> None:
    ingestion.throttle(retry_after="30", times=1)
    delivery = sink.send(one_batch(make_rows(2)), deadline=deadline(2.0))
    assert isinstance(delivery.error, SinkUnavailable)
    assert sleeps_of(fast_retrier) == [] and [c.status for c in ingestion.calls] == [429]


@pytest.mark.parametrize(("status", "cause"), [(500, "5xx"), (502, "5xx"), (503, "5xx"), (408, "timeout")])
def test_transient_statuses_are_retried(
    sink: IngestionSink, ingestion: IngestionStandIn, fast_retrier: Retrier, status: int, cause: str
) -> None:
    ingestion.fail(status, times=1)
    delivery = sink.send(one_batch(make_rows(5)), deadline=deadline())
    assert_all_delivered(delivery, 5)
    assert [c.status for c in ingestion.calls] == [status, 204]
    assert fast_retrier.log.snapshot() == {f"ingestion:{cause}": 1}


def test_stall_times_out_and_is_retried(
    ingestion: IngestionStandIn, mi_credential: Any, fast_retrier: Retrier
) -> None:
    client = build_logs_client(
        ingestion.endpoint, mi_credential, connection_verify=ingestion.ca_file, read_timeout=0.5
    )
    with client:
        sink = sink_for(client, ingestion, fast_retrier, request_timeout=0.5)
        ingestion.stall(3.0, times=1)
        delivery = sink.send(one_batch(make_rows(5)), deadline=deadline())
    # Cut at the 0.5 s read timeout and sent again (waiting out the 3 s stall would count no retry).
    assert_all_delivered(delivery, 5)
    assert fast_retrier.log.snapshot() == {"ingestion:timeout": 1}


def test_dropped_connection_is_retried(
    sink: IngestionSink, ingestion: IngestionStandIn, fast_retrier: Retrier
) -> None:
    ingestion.drop(times=1)
    delivery = sink.send(one_batch(make_rows(5)), deadline=deadline())
    assert_all_delivered(delivery, 5)
    assert fast_retrier.log.snapshot() == {"ingestion:connection": 1}


def test_failure_after_a_split_keeps_the_delivered_prefix(
    sink: IngestionSink, ingestion: IngestionStandIn
) -> None:
    batch = one_batch(make_rows(20, pad=20))
    ingestion.set_max_request_bytes(len(batch.body) // 2 + 100)  # whole batch: 413; each half fits
    for call in range(3, 10):  # call 1: 413, call 2: first half delivered, then only 500s
        ingestion.fail(500, on_call=call)
    delivery = sink.send(batch, deadline=deadline())
    assert isinstance(delivery.error, SinkUnavailable)
    assert delivery.delivered == list(range(10))
    assert delivery.rejected == []
    assert [c.status for c in ingestion.calls] == [413, 204, 500, 500, 500, 500]


# -- permanent failures --------------------------------------------------------------------------


def test_400_isolates_the_refused_record_and_delivers_the_rest(
    sink: IngestionSink, ingestion: IngestionStandIn
) -> None:
    rows = make_rows(20)
    ingestion.refuse(event_ids=[rows[13]["EventId"]], code="InvalidRecord")
    delivery = sink.send(one_batch(rows), deadline=deadline())
    assert delivery.error is None
    assert sorted(delivery.delivered) == [i for i in range(20) if i != 13]
    ((index, reason, code),) = delivery.rejected
    assert (index, code) == (13, "refused") and "HTTP 400 (InvalidRecord)" in reason
    # Both halves at each level, down to the record alone: 1 + 2 x ceil(log2(20)) requests at most.
    assert len(ingestion.calls) <= 1 + 2 * 5
    assert ingestion.accepted_rows == 19 and not ingestion.duplicates()


def test_400_for_every_part_of_a_request_is_a_schema_problem_not_a_record(
    sink: IngestionSink, ingestion: IngestionStandIn
) -> None:
    ingestion.refuse(marker=b'"EventId"', code="InvalidStreamSchema")
    delivery = sink.send(one_batch(make_rows(64)), deadline=deadline())
    assert isinstance(delivery.error, SinkRejected)
    assert "InvalidStreamSchema" in str(delivery.error)
    assert delivery.delivered == [] and delivery.rejected == [], "nothing is set aside"
    assert len(ingestion.calls) == 1 + 2 + 4 + 8, "recognised at parts of 8 rows, not row by row"


def test_a_few_refused_rows_are_set_aside_even_if_they_are_all_the_rows(
    sink: IngestionSink, ingestion: IngestionStandIn
) -> None:
    ingestion.fail(400, times=1)  # the service refuses this content, now and later
    delivery = sink.send(one_batch(make_rows(3)), deadline=deadline())
    assert delivery.error is None and delivery.delivered == []
    assert [r.position for r in delivery.rejected] == [0, 1, 2]
    assert all("HTTP 400" in r.reason for r in delivery.rejected)


def test_401_is_retried_once_then_auth_error(sink: IngestionSink, ingestion: IngestionStandIn) -> None:
    ingestion.set_expected_token("a-token-the-identity-does-not-have")
    delivery = sink.send(one_batch(make_rows(3)), deadline=deadline())
    assert isinstance(delivery.error, SinkAuthError)
    assert "401" in str(delivery.error)
    assert [c.status for c in ingestion.calls] == [401, 401]


def test_403_during_role_propagation_recovers(
    sink: IngestionSink, ingestion: IngestionStandIn, fast_retrier: Retrier
) -> None:
    ingestion.forbid(times=2)
    delivery = sink.send(one_batch(make_rows(3)), deadline=deadline())
    assert_all_delivered(delivery, 3)
    assert fast_retrier.log.snapshot() == {"ingestion:403": 2}


def test_persistent_403_is_bounded_and_actionable(sink: IngestionSink, ingestion: IngestionStandIn) -> None:
    ingestion.forbid(times=None)
    delivery = sink.send(one_batch(make_rows(3)), deadline=deadline())
    assert isinstance(delivery.error, SinkAuthError)
    assert "up to 30 minutes" in str(delivery.error)
    assert "Monitoring Metrics Publisher" in str(delivery.error)
    assert delivery.requests == 3
    assert [c.status for c in ingestion.calls] == [403, 403, 403]


@pytest.mark.parametrize("wrong", ["rule_id", "stream_name"])
def test_404_is_a_configuration_error(
    logs_client: LogsIngestionClient, ingestion: IngestionStandIn, fast_retrier: Retrier, wrong: str
) -> None:
    value = "dcr-ffffffffffffffffffffffffffffffff" if wrong == "rule_id" else "Custom-Other_CL"
    sink = sink_for(logs_client, ingestion, fast_retrier, **{wrong: value})
    delivery = sink.send(one_batch(make_rows(2)), deadline=deadline())
    assert isinstance(delivery.error, SinkConfigError)
    assert value in str(delivery.error)
    assert len(ingestion.calls) == 1


def test_spent_deadline_sends_nothing(sink: IngestionSink, ingestion: IngestionStandIn) -> None:
    delivery = sink.send(one_batch(make_rows(2)), deadline=deadline(0.0))
    assert isinstance(delivery.error, SinkUnavailable)
    assert ingestion.calls == []


def test_token_endpoint_failure_is_an_auth_error(
    sink: IngestionSink, ingestion: IngestionStandIn, token_endpoint: TokenEndpoint
) -> None:
    token_endpoint.set_failure("expires_in_only")
    delivery = sink.send(one_batch(make_rows(2)), deadline=deadline())
    assert isinstance(delivery.error, SinkAuthError)
    assert ingestion.calls == []


# -- nothing secret or personal in logs and errors ----------------------------------------------


def test_logs_and_errors_carry_no_token_or_row_content(
    sink: IngestionSink,
    ingestion: IngestionStandIn,
    token_endpoint: TokenEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    for script in (
        lambda: ingestion.fail(400, times=1),
        lambda: ingestion.fail(500, times=None),
        lambda: ingestion.forbid(times=None),
        lambda: ingestion.set_expected_token("other"),
    ):
        ingestion.reset()
        ingestion.set_expected_token(token_endpoint.access_token)
        script()
        delivery = sink.send(one_batch(make_rows(3)), deadline=deadline())
        errors.append(str(delivery.error) + " ".join(r.reason for r in delivery.rejected))
    text = caplog.text + "\n".join(errors)
    assert "client_request_id=" in caplog.text
    for secret in (
        token_endpoint.access_token,
        "Bearer ",
        MARKER,
        "user0@example.com",
        token_endpoint.identity_header,
    ):
        assert secret not in text


# -- health check --------------------------------------------------------------------------------


def test_check_upload_posts_an_empty_array(
    logs_client: LogsIngestionClient, ingestion: IngestionStandIn
) -> None:
    request_id = check_upload(
        logs_client, rule_id=ingestion.dcr_immutable_id, stream_name=ingestion.stream_name
    )
    (call,) = ingestion.calls
    assert call.status == 204 and call.records == 0 and call.raw_bytes == 2
    assert call.headers["x-ms-client-request-id"] == request_id


def test_check_upload_reports_403_and_404(
    logs_client: LogsIngestionClient, ingestion: IngestionStandIn
) -> None:
    ingestion.forbid(times=1)
    with pytest.raises(SinkAuthError, match="30 minutes"):
        check_upload(logs_client, rule_id=ingestion.dcr_immutable_id, stream_name=ingestion.stream_name)
    with pytest.raises(SinkConfigError, match="Custom-Nope_CL"):
        check_upload(logs_client, rule_id=ingestion.dcr_immutable_id, stream_name="Custom-Nope_CL")


def test_build_logs_client_refuses_plain_http(mi_credential: Any) -> None:
    with pytest.raises(SinkConfigError, match="https"):
        build_logs_client("http://127.0.0.1:1", mi_credential)
