"""Settings: every problem reported at once, each naming its setting; secrets never echoed."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from nordpass_connector.errors import ConfigurationError
from nordpass_connector.schema import DEFAULT_HEALTH_STREAM_NAME, DEFAULT_STREAM_NAME
from nordpass_connector.settings import SETTING_NAMES, load_settings, load_store_settings

REPO = Path(__file__).resolve().parents[1]
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
    assert s.safety_delay_seconds == 2  # chosen from the freshness sweep (docs/performance.md)
    assert TOKEN not in repr(s) and s.nordpass_token.get_secret_value() == TOKEN
    # Every unset tuning setting takes the documented default, the dataclass's.
    from nordpass_connector.settings import Settings

    for name, spec in Settings.__dataclass_fields__.items():
        if isinstance(spec.default, int | float) and not isinstance(spec.default, bool):
            assert getattr(s, name) == spec.default, name


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


@pytest.mark.parametrize("name", ["AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId"])
@pytest.mark.parametrize("load", [load_settings, load_store_settings], ids=["run", "status"])
def test_an_unresolved_identity_reference_is_a_problem_not_another_identity(
    name: str, load: Callable[[Mapping[str, str]], object]
) -> None:
    # Read after the problem check, such a reference used to load silently and the app fell back to
    # another identity (the system-assigned one, or none) with only a 403 later to show for it.
    ref = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/client-id)"
    with pytest.raises(ConfigurationError) as caught:
        load(dict(GOOD, **{name: ref}))
    assert [p.split(" ", 1)[0] for p in caught.value.problems] == [name]
    assert "unresolved Key Vault reference" in caught.value.problems[0]
    assert "kv.vault.azure.net" not in caught.value.describe()


def test_identity_client_ids_reach_the_settings() -> None:
    client = "5b1f9a43-7c2e-4d8b-9f10-2a3b4c5d6e7f"
    storage = "0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f"
    for load in (load_settings, load_store_settings):
        s = load(dict(GOOD, AZURE_CLIENT_ID=client, AzureWebJobsStorage__clientId=storage))
        assert (s.azure_client_id, s.storage.client_id) == (client, storage)


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


# -- placeholders and the token's format: reported with everything else, never echoed ---------------

PLACEHOLDERS = [
    # (setting, value) as left behind by local.settings.json.example, a template or the docs
    ("NORDPASS_TOKEN", "<token from Admin Panel > Integrations > Events reporting > Microsoft Sentinel>"),
    ("NORDPASS_TOKEN", "<token>"),
    ("NORDPASS_TOKEN", "${NORDPASS_TOKEN}"),
    ("NORDPASS_TOKEN", "changeme"),
    ("NORDPASS_TOKEN", "Your_Token-Here"),
    ("NORDPASS_TOKEN", "xxxxxxxxxxxxxxxx"),
    ("NORDPASS_TOKEN", "********"),
    ("DATA_COLLECTION_ENDPOINT", "https://<dcr-name>-xxxx.<region>-1.ingest.monitor.azure.com"),
    ("DATA_COLLECTION_ENDPOINT", "https://nordpass-xxxx.westeurope-1.ingest.monitor.azure.com"),
    ("DATA_COLLECTION_ENDPOINT", "https://dce.example.com"),
    ("DCR_IMMUTABLE_ID", "dcr-00000000000000000000000000000000"),
    ("DCR_IMMUTABLE_ID", "dcr-<immutable id>"),
    ("NORDPASS_ENDPOINT_URL", "https://{region}.nordpass.com/activities/query"),
    ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000000"),
    ("AzureWebJobsStorage__clientId", "<client id>"),
    ("AzureWebJobsStorage__accountName", "<storage account>"),
]


@pytest.mark.parametrize(("name", "value"), PLACEHOLDERS)
def test_placeholders_are_one_problem_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(dict(GOOD, **{name: value}))
    problems = caught.value.problems
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{name} holds a placeholder, not a real value: ")
    assert value not in caught.value.describe(), "the value itself is never quoted"


def test_real_values_that_resemble_placeholders_are_accepted() -> None:
    s = load_settings(
        dict(
            GOOD,
            NORDPASS_TOKEN="np-9a8b7c6d5e4f-token-x1",
            DATA_COLLECTION_ENDPOINT="https://nordpass-dce-xx1a.westeurope-1.ingest.monitor.azure.com",
            DCR_IMMUTABLE_ID="dcr-000000000000000000000000000000a1",
            AZURE_CLIENT_ID="00000000-0000-0000-0000-0000000000a1",
        )
    )
    assert s.dcr_immutable_id.endswith("a1")


@pytest.mark.parametrize(
    "token", ["np token with spaces", "np-token\nsecond-line", "np-t\u00f6ken-1234", "np-token\x7f1234"]
)
def test_the_token_format_is_a_settings_problem_reported_with_the_others(token: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(dict(GOOD, NORDPASS_TOKEN=token, DCR_IMMUTABLE_ID="my-dcr", NORDPASS_PAGE_SIZE="0"))
    problems = caught.value.problems
    assert problems[0] == (
        "NORDPASS_TOKEN contains spaces, line breaks, control or non-ASCII characters: paste the token "
        "alone, exactly as the Admin Panel shows it"
    )
    assert [p.split(" ", 1)[0] for p in problems] == [
        "NORDPASS_TOKEN",
        "DCR_IMMUTABLE_ID",
        "NORDPASS_PAGE_SIZE",
    ]
    assert token not in caught.value.describe()


def test_surrounding_whitespace_of_a_pasted_token_is_trimmed() -> None:
    assert load_settings(dict(GOOD, NORDPASS_TOKEN=f"  {TOKEN}\n")).nordpass_token.get_secret_value() == TOKEN


def test_the_example_file_is_refused_for_its_placeholders_only() -> None:
    example = json.loads((REPO / "local.settings.json.example").read_text(encoding="utf-8"))["Values"]
    with pytest.raises(ConfigurationError) as caught:
        load_settings(example)
    assert [p.split(" ", 1)[0] for p in caught.value.problems] == [
        "NORDPASS_TOKEN",
        "DATA_COLLECTION_ENDPOINT",
        "DCR_IMMUTABLE_ID",
    ]
    real = example | {
        "NORDPASS_TOKEN": TOKEN,
        "DATA_COLLECTION_ENDPOINT": GOOD["DATA_COLLECTION_ENDPOINT"],
        "DCR_IMMUTABLE_ID": GOOD["DCR_IMMUTABLE_ID"],
    }
    assert load_settings(real).storage.connection_string is not None


@pytest.mark.parametrize(
    ("connection_string", "accepted"),
    [
        ("UseDevelopmentStorage=true", True),
        (
            "DefaultEndpointsProtocol=https;AccountName=np;AccountKey=a2V5PQ==;EndpointSuffix=core.windows.net",
            True,
        ),
        ("AccountName=np;SharedAccessSignature=sv=2024&sig=abc", True),
        ("AccountName=np;AccountKey=a2V5;TableEndpoint=http://127.0.0.1:10002/np;", True),
        ("nordpass-storage-key-0123", False),
        ("AccountName=np", False),
        ("AccountName=np;a2V5PQ==", False),
    ],
)
def test_the_storage_connection_string_has_the_shape_the_sdk_accepts(
    connection_string: str, accepted: bool
) -> None:
    environ = {k: v for k, v in GOOD.items() if not k.startswith("AzureWebJobs")}
    environ["AzureWebJobsStorage"] = connection_string
    if accepted:
        assert load_settings(environ).storage.connection_string is not None
        return
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environ)
    assert caught.value.problems == [
        "AzureWebJobsStorage is not a storage connection string: use UseDevelopmentStorage=true (Azurite) or "
        "the storage account's connection string (Access keys), or leave it empty for identity-based storage"
    ]
    assert connection_string not in caught.value.describe()


def test_health_stream_defaults_to_the_health_table_and_can_be_turned_off() -> None:
    assert load_settings(GOOD).dcr_health_stream_name == DEFAULT_HEALTH_STREAM_NAME
    assert load_settings(dict(GOOD, DCR_HEALTH_STREAM_NAME="none")).dcr_health_stream_name is None
    custom = load_settings(dict(GOOD, DCR_HEALTH_STREAM_NAME="Custom-MyHealth_CL"))
    assert custom.dcr_health_stream_name == "Custom-MyHealth_CL"
    with pytest.raises(ConfigurationError, match="DCR_HEALTH_STREAM_NAME must be a custom stream name"):
        load_settings(dict(GOOD, DCR_HEALTH_STREAM_NAME="NordPassConnectorHealth_CL"))
    with pytest.raises(ConfigurationError, match="DCR_HEALTH_STREAM_NAME must differ"):
        load_settings(dict(GOOD, DCR_HEALTH_STREAM_NAME=DEFAULT_STREAM_NAME))
