"""Running one test case the way `streamalert replay` runs a file: the same Engine, pipeline.run (over the
lines in memory, batched as replay batches a file) and memory store, and with `notifications`, the same
Notifier and outbox that `replay --notify` prints from."""

from __future__ import annotations

from dataclasses import dataclass

from streamalert.config.notify import NotifyConfig
from streamalert.config.rules import Rule
from streamalert.engine import DEFAULT_LATENESS_MS, Engine
from streamalert.model import Transition
from streamalert.notify.model import Notification
from streamalert.notify.notifier import Notifier
from streamalert.pipeline import run
from streamalert.ruletest.spec import Case
from streamalert.sources.replay import DEFAULT_BATCH_LINES
from streamalert.state.memory import MemoryStore
from streamalert.testing import CapturingSink, ListSource


@dataclass(slots=True)
class Outcome:
    transitions: list[Transition]
    notifications: list[Notification] | None
    end_ms: int | None  # where the clock stopped: `until`, else the newest line's time


async def run_case(case: Case, rules: list[Rule], config: NotifyConfig | None) -> Outcome:
    """The transitions (and notifications, when the case expects some) replay gives for the case's lines.
    Lateness is replay's default: the lines come in event-time order, so it drops none of them."""
    engine = Engine(rules, lateness_ms=DEFAULT_LATENESS_MS, until_ms=case.until_ms)
    store = MemoryStore()
    sink = CapturingSink()
    notifier = Notifier(config) if config is not None and case.notifications is not None else None
    await run(engine, ListSource(case.lines, DEFAULT_BATCH_LINES), store, sink, None, notifier)
    notifications = None
    if notifier is not None:
        notifications = [Notification.from_json(raw) for _, raw in await store.outbox(None, 1_000_000)]
    await store.close()
    end = case.until_ms if case.until_ms is not None else case.last_ms
    return Outcome(sink.transitions, notifications, end)
