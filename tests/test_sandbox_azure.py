"""The Azure stand-ins' own contract: they must behave like Azure where the connector depends on it,
or the adapter tests prove nothing."""

from __future__ import annotations

import gzip
import os
import signal
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from nordpass_connector.isotime import iso_utc
from sandbox.azurite import Azurite
from sandbox.blackhole import Blackhole
from sandbox.certs import CertPaths, ensure_certs
from sandbox.ingestion import MAX_REQUEST_BYTES, IngestionControl, IngestionStandIn
from sandbox.token_endpoint import TokenEndpoint

# -- helpers -------------------------------------------------------------------------------------


def _tls(stand_in: IngestionStandIn) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=stand_in.ca_file)


def post(
    stand_in: IngestionStandIn,
    body: bytes,
    *,
    token: str | None,
    gzip_body: bool = False,
    dcr: str | None = None,
    stream: str | None = None,
    api_version: str | None = "2023-01-01",
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if gzip_body:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    url = (
        f"{stand_in.endpoint}/dataCollectionRules/{dcr or stand_in.dcr_immutable_id}"
        f"/streams/{stream or stand_in.stream_name}"
    )
    params = {"api-version": api_version} if api_version else {}
    return httpx.post(url, content=body, headers=headers, params=params, verify=_tls(stand_in), timeout=10)


def row(event_id: str, when: datetime, **extra: Any) -> dict[str, Any]:
    seconds = int(when.timestamp())
    return {
        "TimeGenerated": iso_utc(seconds),
        "EventTime": iso_utc(seconds),
        "timestamp": seconds,
        "event_type": "vault",
        "action": "item_created",
        "user_email": "a@example.com",
        "metadata": {"item": "x"},
        "EventId": event_id,
        **extra,
    }


# -- certificates --------------------------------------------------------------------------------


def test_certs_are_reused(tmp_path: Path) -> None:
    first = ensure_certs(tmp_path)
    before = first.ca.read_bytes()
    second = ensure_certs(tmp_path)
    assert second.ca.read_bytes() == before
    assert second.server_chain.read_bytes().count(b"BEGIN CERTIFICATE") == 2


# -- ingestion stand-in: Azure's answers ---------------------------------------------------------


def test_accepts_an_array_and_records_without_the_bearer(
    ingestion: IngestionStandIn, token_endpoint: TokenEndpoint
) -> None:
    now = datetime.now(UTC)
    response = post(
        ingestion, orjson.dumps([row("a-0", now)]), token=token_endpoint.access_token, gzip_body=True
    )
    assert response.status_code == 204
    (call,) = ingestion.calls
    assert call.records == 1 and call.wire_bytes < call.raw_bytes + 30
    assert call.headers["authorization"] == "<redacted>"
    assert token_endpoint.access_token not in repr(call)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_401_without_the_expected_bearer(ingestion: IngestionStandIn, token: str | None) -> None:
    response = post(ingestion, b"[]", token=token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidToken"


def test_404_for_unknown_dcr_or_stream(ingestion: IngestionStandIn, token_endpoint: TokenEndpoint) -> None:
    token = token_endpoint.access_token
    assert post(ingestion, b"[]", token=token, dcr="dcr-unknown").status_code == 404
    assert post(ingestion, b"[]", token=token, stream="Custom-nordpasseventlogs_CL").status_code == 404


def test_413_on_raw_and_on_wire_size(ingestion: IngestionStandIn, token_endpoint: TokenEndpoint) -> None:
    token = token_endpoint.access_token
    big = b'["' + b"a" * (MAX_REQUEST_BYTES) + b'"]'
    assert post(ingestion, big, token=token).status_code == 413
    response = post(ingestion, big, token=token, gzip_body=True)  # tiny on the wire, too big inflated
    assert response.status_code == 413
    assert "1048576" in response.json()["error"]["message"]
    ok = b"[" + b",".join([b'{"a":1}'] * 1000) + b"]"
    assert post(ingestion, ok, token=token).status_code == 204


def test_400_when_not_a_json_array(ingestion: IngestionStandIn, token_endpoint: TokenEndpoint) -> None:
    token = token_endpoint.access_token
    assert post(ingestion, b'{"a": 1}', token=token).status_code == 400
    assert post(ingestion, b"not json", token=token).status_code == 400
    assert post(ingestion, b"\x1f\x8bnot gzip", token=token, gzip_body=False).status_code == 400


def test_undeclared_and_miscased_columns_are_silently_dropped(
    ingestion: IngestionStandIn, token_endpoint: TokenEndpoint
) -> None:
    body = orjson.dumps([row("a-0", datetime.now(UTC), Extra="x", eventid="lower", Action="upper")])
    assert post(ingestion, body, token=token_endpoint.access_token).status_code == 204
    (stored,) = ingestion.rows()
    assert "Extra" not in stored and "eventid" not in stored and "Action" not in stored
    assert stored["EventId"] == "a-0" and stored["action"] == "item_created"


def test_old_timegenerated_is_replaced_but_eventtime_kept(
    ingestion: IngestionStandIn, token_endpoint: TokenEndpoint
) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    recent = datetime.now(UTC) - timedelta(hours=5)
    body = orjson.dumps([row("old-0", old), row("recent-0", recent)])
    assert post(ingestion, body, token=token_endpoint.access_token).status_code == 204
    stored = {r["EventId"]: r for r in ingestion.rows()}
    received = datetime.fromtimestamp(ingestion.calls[0].received_at, UTC).replace(tzinfo=None)
    assert stored["old-0"]["TimeGenerated"] == received
    assert stored["old-0"]["EventTime"] == old.replace(tzinfo=None, microsecond=0)
    assert stored["recent-0"]["TimeGenerated"] == recent.replace(tzinfo=None, microsecond=0)


def test_kql_runs_on_accepted_rows_and_duplicates_are_counted(
    ingestion: IngestionStandIn, token_endpoint: TokenEndpoint
) -> None:
    now = datetime.now(UTC)
    body = orjson.dumps([row("a-0", now), row("a-0", now), row("b-0", now)])
    assert post(ingestion, body, token=token_endpoint.access_token).status_code == 204
    assert ingestion.kql("NordPassEventLogs_CL | where TimeGenerated > ago(1h) | summarize n = count()") == [
        (3,)
    ]
    assert ingestion.kql("NordPassEventLogs_CL | where metadata.item == 'x' | count") == [(3,)]
    assert ingestion.duplicates() == {"a-0": 2}
    assert ingestion.stats()["duplicate_rows"] == 1


# -- ingestion stand-in: scripted faults ---------------------------------------------------------


def test_fault_script_order_and_bodies(ingestion: IngestionStandIn, token_endpoint: TokenEndpoint) -> None:
    token = token_endpoint.access_token
    ingestion.forbid(times=1)
    ingestion.throttle(retry_after="7", times=1)
    ingestion.fail(503, on_call=4)
    first = post(ingestion, b"[]", token=token)
    assert first.status_code == 403 and first.json()["error"]["code"] == "OperationFailed"
    assert (
        "does not have access to ingest data for the data collection rule" in first.json()["error"]["message"]
    )
    second = post(ingestion, b"[]", token=token)
    assert second.status_code == 429 and second.headers["retry-after"] == "7"
    assert post(ingestion, b"[]", token=token).status_code == 204
    assert post(ingestion, b"[]", token=token).status_code == 503
    assert post(ingestion, b"[]", token=token).status_code == 204


def test_refused_records_fail_every_request_that_holds_them(
    ingestion: IngestionStandIn, token_endpoint: TokenEndpoint
) -> None:
    token = token_endpoint.access_token
    now = datetime.now(UTC)
    good, bad = row("good-0", now), row("bad-0", now)
    ingestion.refuse(event_ids=["bad-0"], code="InvalidRecord")
    refused = post(ingestion, orjson.dumps([good, bad]), token=token)
    assert refused.status_code == 400 and refused.headers["x-ms-error-code"] == "InvalidRecord"
    assert post(ingestion, orjson.dumps([good]), token=token).status_code == 204
    assert post(ingestion, orjson.dumps([bad]), token=token).status_code == 400
    # A scripted 400 refuses the content it answered, from then on.
    ingestion.clear_faults()
    ingestion.fail(400, times=1)
    assert post(ingestion, orjson.dumps([row("x-0", now)]), token=token).status_code == 400
    assert post(ingestion, orjson.dumps([row("x-0", now)]), token=token).status_code == 400
    assert post(ingestion, orjson.dumps([bad]), token=token).status_code == 204
    assert ingestion.event_id_counts() == {"good-0": 1, "bad-0": 1}


def test_seeded_random_failures_are_reproducible(
    ingestion: IngestionStandIn, token_endpoint: TokenEndpoint
) -> None:
    def run() -> list[int]:
        ingestion.reset()
        ingestion.fail(500, times=None, rate=0.5)
        return [post(ingestion, b"[]", token=token_endpoint.access_token).status_code for _ in range(12)]

    first = run()
    assert first == run()
    assert set(first) == {204, 500}


def test_drop_and_stall(ingestion: IngestionStandIn, token_endpoint: TokenEndpoint) -> None:
    ingestion.drop(times=1)
    with pytest.raises(httpx.TransportError):
        post(ingestion, b"[]", token=token_endpoint.access_token)
    ingestion.stall(5.0, times=1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{ingestion.endpoint}/dataCollectionRules/{ingestion.dcr_immutable_id}/streams/{ingestion.stream_name}",
            params={"api-version": "2023-01-01"},
            content=b"[]",
            headers={"Authorization": f"Bearer {token_endpoint.access_token}"},
            verify=_tls(ingestion),
            timeout=httpx.Timeout(10, read=0.3),
        )
    # The stalled call is recorded once the stand-in notices the client has gone.
    for _ in range(40):
        if len(ingestion.calls) == 2:
            break
        time.sleep(0.05)
    assert [(c.fault, c.status) for c in ingestion.calls] == [("drop", 0), ("stall", 0)]


def test_latency_injection(ingestion: IngestionStandIn, token_endpoint: TokenEndpoint) -> None:
    ingestion.set_latency(100)
    started = time.monotonic()
    assert post(ingestion, b"[]", token=token_endpoint.access_token).status_code == 204
    assert time.monotonic() - started >= 0.1


# -- control surface for other processes ----------------------------------------------------------


def test_control_routes(ingestion: IngestionStandIn, token_endpoint: TokenEndpoint) -> None:
    with IngestionControl(ingestion.endpoint, ca_file=ingestion.ca_file) as control:
        control.set_mode(faults=[{"status": 502, "times": 1}], latency_ms=0)
        token = token_endpoint.access_token
        assert post(ingestion, b"[]", token=token).status_code == 502
        body = orjson.dumps([row("c-0", datetime.now(UTC))])
        assert post(ingestion, body, token=token).status_code == 204
        stats = control.stats()
        assert (
            stats["calls"] == 2 and stats["statuses"] == {"502": 1, "204": 1} and stats["accepted_rows"] == 1
        )
        assert post(ingestion, b"[]", token=token, stream=ingestion.health_stream_name).status_code == 204
        # Per stream, so a benchmark can tell event uploads from health rows.
        assert control.stats()["calls_by_stream"] == {
            ingestion.stream_name: 2,
            ingestion.health_stream_name: 1,
        }
        calls = control.calls()
        assert [c["status"] for c in calls] == [502, 204, 204] and "body" not in calls[0]
        assert control.kql("NordPassEventLogs_CL | project EventId") == [["c-0"]]
        with pytest.raises(RuntimeError, match="Error"):
            control.kql("NoSuchTable | count")
        assert control.reset()["calls"] == 0


def test_count_store_and_file_backed_store(certs: CertPaths, tmp_path: Path) -> None:
    body = orjson.dumps([row("a-0", datetime.now(UTC)), row("a-0", datetime.now(UTC))])
    with IngestionStandIn(certs, store="count") as counting:
        assert post(counting, body, token="any").status_code == 204
        assert counting.accepted_rows == 2 and counting.duplicates() == {"a-0": 2}
        with pytest.raises(RuntimeError, match="count"):
            counting.rows()
    db = tmp_path / "rows.duckdb"
    with IngestionStandIn(certs, db_path=db) as first:
        assert post(first, body, token="any").status_code == 204
    with IngestionStandIn(certs, db_path=db) as second:
        assert second.accepted_rows == 2
        assert second.kql("NordPassEventLogs_CL | count") == [(2,)]


# -- token endpoint ------------------------------------------------------------------------------


def test_token_endpoint_checks_headers(token_endpoint: TokenEndpoint) -> None:
    params = {"api-version": "2019-08-01", "resource": "https://monitor.azure.com"}
    good = {"X-IDENTITY-HEADER": token_endpoint.identity_header, "Metadata": "true"}
    ok = httpx.get(token_endpoint.url, params=params, headers=good)
    assert ok.status_code == 200
    assert ok.json()["access_token"] == token_endpoint.access_token and ok.json()["expires_on"] > time.time()
    assert (
        httpx.get(token_endpoint.url, params=params, headers={**good, "X-IDENTITY-HEADER": "no"}).status_code
        == 401
    )
    assert (
        httpx.get(
            token_endpoint.url, params=params, headers={"X-IDENTITY-HEADER": good["X-IDENTITY-HEADER"]}
        ).status_code
        == 400
    )
    assert [r.status for r in token_endpoint.requests] == [200, 401, 400]


def test_real_credential_user_assigned_and_failures(
    managed_identity_env: dict[str, str], token_endpoint: TokenEndpoint
) -> None:
    token_endpoint.set_expected_client_id("11111111-2222-3333-4444-555555555555")
    credential = ManagedIdentityCredential(client_id="11111111-2222-3333-4444-555555555555")
    assert credential.get_token("https://monitor.azure.com/.default").token == token_endpoint.access_token
    assert token_endpoint.requests[-1].client_id == "11111111-2222-3333-4444-555555555555"
    token_endpoint.set_failure("expires_in_only")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential().get_token("https://monitor.azure.com/.default")


def test_token_endpoint_stall_and_blackhole_never_answer(token_endpoint: TokenEndpoint) -> None:
    token_endpoint.set_failure("stall")
    headers = {"X-IDENTITY-HEADER": token_endpoint.identity_header, "Metadata": "true"}
    params = {"api-version": "2019-08-01", "resource": "https://monitor.azure.com"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(token_endpoint.url, params=params, headers=headers, timeout=httpx.Timeout(5, read=0.3))
    with Blackhole() as hole, pytest.raises(httpx.ReadTimeout):
        httpx.post(hole.url(path="/x"), content=b"{}", timeout=httpx.Timeout(5, read=0.3))
    assert hole.accepted == 1


# -- Azurite launcher ----------------------------------------------------------------------------


def test_azurite_stop_kills_the_recorded_pid(tmp_path: Path) -> None:
    from azure.data.tables import TableServiceClient

    azurite = Azurite(location=tmp_path / "azurite").start()
    pid = azurite.pids["table"]
    try:
        service = TableServiceClient.from_connection_string(azurite.connection_string)
        service.create_table("probe")
        assert [t.name for t in service.list_tables()] == ["probe"]
    finally:
        azurite.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, signal.SIG_DFL)
    assert any((tmp_path / "azurite").iterdir()), "persisted state stays in the folder"
