"""Event loop health: a periodic ticker measures how late the loop runs it, as a metric and a log line.

Every `period` the ticker asks to be woken `period` later; how much later than that it actually ran is time
during which the loop could not run anything else (a callback or a batch kept it busy). That lag goes to
`streamalert_event_loop_lag_seconds` (and its maximum to `..._lag_max_seconds`); a lag over `stall_s` is
also logged as `event_loop_stall`, so an operator can see a stall and what the process was doing then.
"""

from __future__ import annotations

import asyncio

import structlog

from streamalert.clock import Stopwatch
from streamalert.telemetry.metrics import Metrics

PERIOD_S = 0.05
STALL_S = 1.0
_log = structlog.get_logger("streamalert.loop")


async def watch_loop(metrics: Metrics, period_s: float = PERIOD_S, stall_s: float = STALL_S) -> None:
    """Measure the loop's lag until cancelled."""
    longest = 0.0
    while True:
        watch = Stopwatch()
        await asyncio.sleep(period_s)  # a period: the measurement is how late it ends
        lag = max(0.0, watch.elapsed() - period_s)
        metrics.loop_lag.observe(lag)
        if lag > longest:
            longest = lag
            metrics.loop_lag_max.set(lag)
        if lag >= stall_s:
            _log.warning("event_loop_stall", seconds=round(lag, 3))
