"""Settings: every problem reported at once, each naming its setting; secrets never echoed."""

from __future__ import annotations

import pytest

from nordpass_connector.errors import ConfigurationError
from nordpass_connector.schema import DEFAULT_STREAM_NAME
from nordpass_connector.settings import SETTING_NAMES, load_settings

TOKEN = "np-live-token-9f8e7d6c5b4a"
GOOD = {
    "NORDPASS_ENDPOINT_URL": "https://api-activities.eu.nordpass.com/activities/query",
    "NORDPASS_TOKEN": TOKEN,
    "DATA_COLLECTION_ENDPOINT": "https://nordpass-dcr-abcd.westeurope-1.ingest.monitor.azure.com/",
    "DCR_IMMUTABLE_ID": "dcr-0123456789abcdef0123456789abcdef",
    "AzureWebJobsStorage__accountName": "nordpassstore",
}


def test_valid_settings_with_defaults() -> None:
    s = load_settings(GOOD)
    assert s.dcr_stream_name == DEFAULT_STREAM_NAME
    assert s.storage.table_service_uri == "https://nordpassstore.table.core.windows.net"
    assert s.data_collection_endpoint.endswith(".azure.com")
    assert (s.run_budget_seconds, s.lookback_seconds, s.backfill_days, s.page_size) == (45.0, 900, 7.0, 100)
    assert TOKEN not in repr(s) and s.nordpass_token.get_secret_value() == TOKEN


def test_all_problems_are_reported_together_each_naming_its_setting() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            {
                "NORDPASS_ENDPOINT_URL": "http://api-activities.eu.nordpass.com/activities/query",
                "DCR_IMMUTABLE_ID": "my-dcr",
                "NORDPASS_PAGE_SIZE": "lots",
            }
        )
    problems = caught.value.problems
    for name in (
        "NORDPASS_ENDPOINT_URL",
        "NORDPASS_TOKEN",
        "DATA_COLLECTION_ENDPOINT",
        "DCR_IMMUTABLE_ID",
        "NORDPASS_PAGE_SIZE",
        "AzureWebJobsStorage",
    ):
        assert any(name in p for p in problems), name
    assert len(problems) >= 6


def test_unresolved_key_vault_reference_is_a_configuration_error_not_a_token() -> None:
    ref = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/nordpass-token)"
    with pytest.raises(ConfigurationError) as caught:
        load_settings(dict(GOOD, NORDPASS_TOKEN=ref))
    assert "NORDPASS_TOKEN" in str(caught.value) and "Key Vault" in str(caught.value)


def test_http_only_for_loopback() -> None:
    assert load_settings(dict(GOOD, NORDPASS_ENDPOINT_URL="http://127.0.0.1:8080/activities/query"))
    with pytest.raises(ConfigurationError, match="NORDPASS_ENDPOINT_URL must use https"):
        load_settings(dict(GOOD, NORDPASS_ENDPOINT_URL="http://10.0.0.5/activities/query"))


def test_bearer_prefix_is_refused_without_echoing_the_token() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(dict(GOOD, NORDPASS_TOKEN="Bearer " + TOKEN))
    assert TOKEN not in str(caught.value) and "raw token" in str(caught.value)


def test_connection_string_storage_is_accepted_and_secret() -> None:
    s = load_settings(
        {k: v for k, v in GOOD.items() if not k.startswith("AzureWebJobs")}
        | {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    )
    assert s.storage.connection_string is not None and s.storage.table_service_uri is None


def test_out_of_range_knobs_name_their_limits() -> None:
    with pytest.raises(ConfigurationError, match=r"NORDPASS_BACKFILL_DAYS must be between 0\.0 and 89\.0"):
        load_settings(dict(GOOD, NORDPASS_BACKFILL_DAYS="120"))


def test_setting_names_cover_everything_read() -> None:
    assert {"NORDPASS_TOKEN", "DCR_STREAM_NAME", "AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId"} <= set(
        SETTING_NAMES
    )
