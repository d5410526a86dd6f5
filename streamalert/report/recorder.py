"""What `replay --report` draws, recorded from the engine as it runs: every series' window value over time.

The engine calls `Recorder.sample` (its `sampler` hook) with each value it computes for a series: at the
instants it evaluates the series (events, window expiry, `for` timers) and when an event adds to a count
series that cannot yet reach its threshold. Those are the values the engine compared with the threshold, so
the report cannot show a line the engine did not see. Between samples the value is drawn as a step; a
`count > n` series that cannot start to hold is not evaluated while its window only empties, so its line
steps down at the next sample (the report says so).

Memory is bounded whatever the input's length or group cardinality:
- each series keeps at most MAX_POINTS points: at 2 x MAX_POINTS, neighbouring pairs merge into the one with
  the higher value (peaks against a `>` threshold survive; the time axis keeps its extent);
- the phase changes (pending, firing, back to inactive) are kept exactly, up to MAX_CHANGES per series;
- a rule records at most MAX_SERIES series; later groups are counted, not drawn, unless they leave the
  inactive phase (those are the interesting ones), up to MAX_SERIES more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from streamalert.alerts.lifecycle import Phase
from streamalert.config.rules import Rule
from streamalert.model import Transition

MAX_POINTS = 300
MAX_CHANGES = 1_000
MAX_SERIES = 50

State = Literal["inactive", "pending", "firing"]


def _state(phase: Phase) -> State:
    if phase.firing:
        return "firing"
    return "inactive" if phase.active_since is None else "pending"


@dataclass(slots=True)
class SeriesTrace:
    """One series (rule, group key): sampled values and its exact phase changes."""

    key: tuple[str, ...]
    points: list[tuple[int, float]] = field(default_factory=list)
    changes: list[tuple[int, State]] = field(default_factory=list)  # the first sample's phase, then each change
    samples: int = 0  # values received, before downsampling
    peak: float = 0.0

    def add(self, at: int, value: float, state: State) -> None:
        self.samples += 1
        self.peak = max(self.peak, value)
        points = self.points
        if points and points[-1][0] == at:
            points[-1] = (at, value)  # one instant, one value: the last the engine computed
        else:
            points.append((at, value))
            if len(points) >= 2 * MAX_POINTS:
                self.points = [max(points[k], points[k + 1], key=_value) for k in range(0, len(points), 2)]
        changes = self.changes
        if (not changes or changes[-1][1] != state) and len(changes) < MAX_CHANGES:
            changes.append((at, state))

    @property
    def active(self) -> bool:
        return any(state != "inactive" for _, state in self.changes)


def _value(point: tuple[int, float]) -> float:
    return point[1]


@dataclass(slots=True)
class RuleTrace:
    rule: Rule
    series: dict[tuple[str, ...], SeriesTrace] = field(default_factory=dict)
    unrecorded: set[tuple[str, ...]] = field(default_factory=set)  # groups beyond the cap (bounded, see add)
    overflow: int = 0  # groups beyond the cap that were never drawn


class Recorder:
    """Collects the engine's samples and the run's transitions for one report."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = [RuleTrace(rule) for rule in rules]
        self.transitions: list[Transition] = []
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    def sample(self, rule: int, key: tuple[str, ...], at: int, value: float, phase: Phase) -> None:
        """The engine's `sampler` hook (see the module docstring for what is kept)."""
        if self.first_ms is None or at < self.first_ms:
            self.first_ms = at
        if self.last_ms is None or at > self.last_ms:
            self.last_ms = at
        trace = self.rules[rule]
        series = trace.series.get(key)
        state = _state(phase)
        if series is None:
            if len(trace.series) >= MAX_SERIES and (state == "inactive" or len(trace.series) >= 2 * MAX_SERIES):
                if key not in trace.unrecorded and len(trace.unrecorded) < MAX_SERIES * 20:
                    trace.unrecorded.add(key)
                    trace.overflow += 1
                return
            series = trace.series[key] = SeriesTrace(key)
        series.add(at, float(value), state)

    def write(self, transitions: list[Transition]) -> None:
        """A TransitionSink: the report's transitions table and marks."""
        self.transitions.extend(transitions)
        for t in transitions:
            if self.first_ms is None or t.at_ms < self.first_ms:
                self.first_ms = t.at_ms
            if self.last_ms is None or t.at_ms > self.last_ms:
                self.last_ms = t.at_ms
