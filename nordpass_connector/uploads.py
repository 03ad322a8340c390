"""The current window's uploads: batches handed to the sink, at most `in_flight` at once, whose
verdicts are recorded in submission order on the run's thread (so checkpoint commits never race)."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future

from .errors import ConnectorError
from .ports import Batch, Delivery, LogSink, Window
from .progress import Progress
from .report import RunReport
from .retry import Deadline


class Uploads:
    """The current window's batches handed to the sink whose verdicts are not recorded yet.

    At most `uploads_in_flight` at once; verdicts are recorded oldest first. When a delivery
    carries an error, the other batches in flight are still awaited and what they delivered is
    recorded before the error is raised: an acknowledged batch is never forgotten by a failing run.
    """

    def __init__(
        self,
        uploader: Executor,
        sink: LogSink,
        progress: Progress,
        window: Window,
        report: RunReport,
        *,
        deadline: Deadline,
        in_flight: int,
    ) -> None:
        self._uploader, self._sink = uploader, sink
        self._progress, self._window, self._report = progress, window, report
        self._deadline = deadline
        self._limit = max(1, in_flight)
        self._pending: deque[tuple[Batch, Future[Delivery]]] = deque()

    def submit(self, batch: Batch) -> None:
        if len(self._pending) >= self._limit:
            self._settle_oldest(commit=True)
        future = self._uploader.submit(self._sink.send, batch, deadline=self._deadline)
        self._pending.append((batch, future))

    def settle_all(self, *, commit_last: bool = True) -> None:
        while self._pending:
            self._settle_oldest(commit=commit_last or len(self._pending) > 1)

    def _settle_oldest(self, *, commit: bool) -> None:
        batch, future = self._pending.popleft()
        delivery = self._progress.wait(future)
        if delivery.error is None:
            self._progress.record(batch, delivery, self._window, self._report, commit=commit)
            return
        error: ConnectorError = delivery.error
        self._progress.record(batch, delivery, self._window, self._report, commit=False)
        while self._pending:
            other, later = self._pending.popleft()
            self._progress.record(other, self._progress.wait(later), self._window, self._report, commit=False)
        self._progress.commit()
        raise error
