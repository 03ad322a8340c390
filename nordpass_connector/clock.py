"""Time as injectable callables, so tests and the sandbox can steer it.

`now()` is wall-clock Unix seconds (event times are Unix seconds); `monotonic()` measures budgets
and deadlines; `sleep()` waits. Only `SystemClock` touches the real clock.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
