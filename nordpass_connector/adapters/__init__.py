"""Adapters: each wraps one technology and translates its errors into the package's own (`errors`).

- `nordpass`: the NordPass Activity API over httpx (with `keepalive`'s connection stack);
- `ingestion`: the Azure Monitor Logs Ingestion API (events, the health row, the upload check);
- `table_store`: Azure Table Storage (checkpoint row, dead letters, health record, storage probe);
- `requests_session`: the requests session under the Azure SDK clients;
- `emulator`: recognising a local storage emulator (Azurite) that is not running.

Nothing outside `composition` builds these from settings.
"""
