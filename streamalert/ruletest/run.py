"""Running one test case the way `streamalert replay` runs a file: the same Engine, pipeline.run and memory
store, and with `notifications`, the same Notifier and outbox that `replay --notify` prints from."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass

from streamalert.config.notify import NotifyConfig
from streamalert.config.rules import Rule
from streamalert.engine import DEFAULT_LATENESS_MS, Engine
from streamalert.model import Transition
from streamalert.notify.model import Notification
from streamalert.notify.notifier import Notifier
from streamalert.pipeline import run
from streamalert.ruletest.spec import Case
from streamalert.sources import Batch
from streamalert.sources.replay import DEFAULT_BATCH_LINES
from streamalert.state.memory import MemoryStore


@dataclass(slots=True)
class Outcome:
    transitions: list[Transition]
    notifications: list[Notification] | None
    end_ms: int | None  # where the clock stopped: `until`, else the newest line's time


class _Lines:
    """A source over lines in memory, batched as ReplaySource batches a file."""

    name = "test"

    def __init__(self, lines: list[bytes]) -> None:
        self._lines = lines

    async def batches(self) -> AsyncIterator[Batch]:
        for start in range(0, len(self._lines), DEFAULT_BATCH_LINES):
            yield Batch(self._lines[start : start + DEFAULT_BATCH_LINES], start)

    async def ack(self, batch: Batch) -> None:
        return None

    def lagging(self) -> Collection[str]:
        return ("",)  # like saved logs: their own time, never the wall clock

    def resume(self, meta: Mapping[str, int]) -> None:
        return None


class _Collect:
    def __init__(self) -> None:
        self.transitions: list[Transition] = []

    def write(self, transitions: list[Transition]) -> None:
        self.transitions.extend(transitions)


async def run_case(case: Case, rules: list[Rule], config: NotifyConfig | None) -> Outcome:
    """The transitions (and notifications, when the case expects some) replay gives for the case's lines.
    Lateness is replay's default: the lines come in event-time order, so it drops none of them."""
    engine = Engine(rules, lateness_ms=DEFAULT_LATENESS_MS, until_ms=case.until_ms)
    store = MemoryStore()
    sink = _Collect()
    notifier = Notifier(config) if config is not None and case.notifications is not None else None
    await run(engine, _Lines(case.lines), store, sink, None, notifier)
    notifications = None
    if notifier is not None:
        notifications = [Notification.from_json(raw) for _, raw in await store.outbox(None, 1_000_000)]
    await store.close()
    end = case.until_ms if case.until_ms is not None else case.last_ms
    return Outcome(sink.transitions, notifications, end)
