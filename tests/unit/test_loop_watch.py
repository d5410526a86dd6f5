"""The event-loop watcher measures how long the loop was kept busy, exports it and logs stalls."""

from __future__ import annotations

import asyncio
import threading

from structlog.testing import capture_logs

from streamalert.telemetry.loop import watch_loop
from streamalert.telemetry.metrics import Metrics


async def test_a_blocked_loop_is_measured_and_logged_as_a_stall() -> None:
    """A callback that holds the loop for 1.2 s shows as a lag of at least 1 s in the max gauge and the
    histogram, and is logged once as event_loop_stall."""
    metrics = Metrics()
    with capture_logs() as logs:
        watcher = asyncio.create_task(watch_loop(metrics, period_s=0.01, stall_s=1.0))
        await asyncio.sleep(0.05)  # let the watcher start its first period
        threading.Event().wait(1.2)  # the stall under test: the loop can run nothing meanwhile
        for _ in range(500):  # poll with a deadline
            if _longest(metrics) >= 1.0:
                break
            await asyncio.sleep(0.01)
        watcher.cancel()
    assert _longest(metrics) >= 1.0
    stalls = [entry for entry in logs if entry["event"] == "event_loop_stall"]
    assert len(stalls) == 1
    assert stalls[0]["seconds"] >= 1.0
    exposition = metrics.render()[0].decode()
    assert 'streamalert_event_loop_lag_seconds_bucket{le="1.0"}' in exposition


async def test_a_free_loop_reports_no_stall() -> None:
    """Without blocking work the longest lag stays well under the stall threshold and nothing is logged."""
    metrics = Metrics()
    with capture_logs() as logs:
        watcher = asyncio.create_task(watch_loop(metrics, period_s=0.01, stall_s=1.0))
        await asyncio.sleep(0.3)
        watcher.cancel()
    assert _longest(metrics) < 1.0
    assert not [entry for entry in logs if entry["event"] == "event_loop_stall"]


def _longest(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("streamalert_event_loop_lag_max_seconds") or 0.0
