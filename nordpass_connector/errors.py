"""The connector's own exception tree.

Adapters catch third-party exceptions (httpx, azure-core, azure-data-tables) at their edge and
re-raise one of these, so the pipeline decides what to do next from the class alone::

    ConnectorError                      base; ``str(e)`` is safe to log (no secrets, no event content)
    ├── ConfigurationError              fatal until an operator fixes a setting; carries every problem
    │   └── SettingsFileError           the --settings file itself is unusable (missing, not JSON, ...)
    ├── SourceError                     NordPass Activity API
    │   ├── SourceAuthError             token rejected (401/403): fatal, re-issue the token
    │   ├── SourceUnavailable           retries exhausted or budget spent: try again next tick
    │   │   └── SourceUnreachable       no connection at all (refused, name not resolved): fail fast
    │   ├── SourceProtocolError         the API answered something we cannot use (not JSON, bad shape)
    │   └── WindowUnreadable            a window's pages never added up: held back, re-read every run
    ├── SinkError                       Azure Monitor Logs Ingestion
    │   ├── SinkAuthError               401/403: credential or role problem (403 may be propagation)
    │   │   └── SinkTokenUnavailable    no identity produced a token (no managed identity, no az login)
    │   ├── SinkConfigError             404: wrong endpoint, DCR immutable id or stream
    │   ├── SinkRejected                400 for most records of a request: a schema problem, not data
    │   └── SinkUnavailable             transient failures left after our retries: next tick
    └── CheckpointError                 Table Storage
        ├── CheckpointConflict          another run advanced the checkpoint (ETag mismatch): stop now
        │   └── CheckpointBusy          another run holds the checkpoint's lease: not a failure
        ├── CheckpointTooLarge          the checkpoint no longer fits one table row: a setting to lower
        └── CheckpointUnavailable       read or write failed: never treated as "no checkpoint"
            └── CheckpointDamaged       a stored property cannot be decoded: named, left as it was

Every error has an ``action`` (what a person should do) and a ``retriable`` flag (whether the next
tick can succeed without anyone doing anything).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ports import Window


class ConnectorError(Exception):
    """Base of every error this package raises on purpose."""

    retriable: bool = False
    action: str = "see Troubleshoot in the connector's README (error class -> what to do)"

    def __init__(self, message: str, *, action: str | None = None) -> None:
        super().__init__(message)
        if action is not None:
            self.action = action

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def describe(self) -> str:
        """One line for logs and reports: what went wrong and what to do."""
        return f"{type(self).__name__}: {self.message} -> {self.action}"


class ConfigurationError(ConnectorError):
    action = (
        "fix the listed settings (app settings in Azure; locally, in the local.settings.json passed "
        "with --settings)"
    )

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration: " + "; ".join(self.problems))


class SettingsFileError(ConfigurationError):
    """The `--settings` file cannot be used at all; its contents are never quoted (it holds secrets)."""

    action = (
        'pass --settings the path of a local.settings.json: a JSON object whose "Values" object holds '
        "the settings (copy local.settings.json.example to start one)"
    )

    def __init__(self, problem: str) -> None:
        self.problems = [problem]
        ConnectorError.__init__(self, problem)


class SourceError(ConnectorError):
    pass


class SourceAuthError(SourceError):
    action = (
        "the NordPass token was rejected: create a new one in the Admin Panel and update "
        "NORDPASS_TOKEN (Admin Panel > Integrations > Events reporting > Microsoft Sentinel)"
    )


class SourceUnavailable(SourceError):
    retriable = True
    action = "nothing to do if it clears: the next run resumes from the checkpoint"


class SourceUnreachable(SourceUnavailable):
    """No connection could be made to a NordPass endpoint that has not answered in this run.

    That is almost always a wrong URL or a blocked network, which waiting out the whole retry budget
    cannot fix, so it is reported after a few quick attempts. It stays a retriable SourceUnavailable:
    if NordPass itself was briefly down, the next tick simply tries again and nobody needs to act.
    """

    action = (
        "check NORDPASS_ENDPOINT_URL (the URL shown next to the token in the Admin Panel) and that the "
        "app can reach it (DNS, outbound firewall, VNet integration); if NordPass itself was down, "
        "nothing to do: the next run tries again and resumes from the checkpoint"
    )


class SourceProtocolError(SourceError):
    retriable = True
    action = "if it persists, check NORDPASS_ENDPOINT_URL points at /activities/query of your data center"


class WindowUnreadable(SourceError):
    """Every page was fetched, but they never added up to one consistent read of `window` (pages
    repeating or short while the total stays the same, a total that keeps moving). Not a failure
    of the run: the pipeline holds the window back and re-reads it on every run."""

    retriable = True
    action = "nothing to do if it clears; if the window stays held for hours, report it to NordPass"

    def __init__(self, window: Window, reason: str, *, fetched_at: float, pages: int) -> None:
        super().__init__(f"window {window.start}..{window.end} could not be read consistently: {reason}")
        self.window = window
        self.reason = reason
        self.fetched_at = fetched_at
        self.pages = pages


class SinkError(ConnectorError):
    pass


class SinkAuthError(SinkError):
    retriable = True
    action = (
        "grant the function's managed identity 'Monitoring Metrics Publisher' on the data collection "
        "rule; right after deployment allow up to 30 minutes for the role to propagate"
    )


class SinkTokenUnavailable(SinkAuthError):
    """The credential produced no token at all, so no role was even asked about: waiting for a role
    to propagate cannot help."""

    retriable = False  # usually an identity to enable or a sign-in (a failing token endpoint clears)
    action = (
        "enable a managed identity on the function app (Identity blade); for a user-assigned identity set "
        "AZURE_CLIENT_ID to its client id; if it is enabled and this persists, the platform's token "
        "endpoint is failing: restart the app. Locally, sign in with `az login`"
    )


class SinkConfigError(SinkError):
    action = (
        "check DATA_COLLECTION_ENDPOINT, DCR_IMMUTABLE_ID and DCR_STREAM_NAME against the deployed "
        "data collection rule (the deployment outputs list them)"
    )


class SinkRejected(SinkError):
    retriable = True
    action = (
        "the Logs Ingestion API refuses records that match the connector's schema: compare the DCR's "
        "stream declaration with the connector's columns (redeploy the template), then the next run "
        "sends them; nothing was set aside"
    )


class SinkUnavailable(SinkError):
    retriable = True
    action = "nothing to do if it clears: undelivered events are re-sent from the checkpoint"


class CheckpointError(ConnectorError):
    pass


class CheckpointConflict(CheckpointError):
    retriable = True
    action = (
        "another run advanced the checkpoint; this run stopped without sending more. "
        "If it happens every minute, two apps share one checkpoint table"
    )


class CheckpointBusy(CheckpointConflict):
    """Another run holds the lease (a live run, or a killed one whose lease has not expired): this
    run did nothing, which is normal, so it is reported as busy and not as a failure."""

    action = (
        "nothing to do: another run holds the checkpoint; a killed run's lease expires by itself. "
        "If it happens every minute, two apps share one checkpoint table"
    )


class CheckpointTooLarge(CheckpointError):
    """The checkpoint cannot be stored in one table entity (a ledger that outgrew its row, or any
    property over Table Storage's limits). Nothing was written: the last commit stands."""

    action = "lower NORDPASS_MAX_WINDOW_EVENTS or NORDPASS_LOOKBACK_SECONDS so the checkpoint fits one row"


class CheckpointUnavailable(CheckpointError):
    retriable = True
    action = (
        "check AzureWebJobsStorage and that the identity has 'Storage Table Data Contributor'; "
        "the run stopped rather than restart a 7-day backfill"
    )


class CheckpointDamaged(CheckpointUnavailable, ValueError):
    """A stored property of the checkpoint, ledger or health row cannot be decoded. Raised by the
    pure decoders with the property named; the caller adds the row (`in_row`). Also a ValueError,
    for callers that treat any decoding failure alike."""

    retriable = False
    action = (
        "restore the row from a copy or fix the named property (Azure Storage Explorer); deleting the "
        "checkpoint row restarts a 7-day backfill and sends recent events again"
    )

    def __init__(self, property: str, problem: str, *, row: str = "") -> None:
        self.property = property
        self.problem = problem
        self.row = row
        where = f"the row '{row}'" if row else "a stored row"
        super().__init__(f"{where} is damaged: property {property}: {problem}; it was left as it was")

    def in_row(self, row: str) -> CheckpointDamaged:
        return CheckpointDamaged(self.property, self.problem, row=row)
