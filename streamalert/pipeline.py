"""The one place the stages are chained: source -> decode -> engine -> store checkpoint -> output -> ack."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from streamalert.clock import Clock, Stopwatch
from streamalert.config.rules import Rule
from streamalert.engine import Engine, EngineStats
from streamalert.model import Transition
from streamalert.notify.notifier import Notifier
from streamalert.notify.silences import Silence
from streamalert.output import transition_json
from streamalert.sources import Batch, Source
from streamalert.state import keys
from streamalert.state.base import Changes, Store
from streamalert.steps import finish, stepped
from streamalert.telemetry.memory import give_back, release_memory, resident_mb
from streamalert.telemetry.metrics import Metrics

T = TypeVar("T")
# Lines the engine takes in one go in live mode (~10 ms of work); between slices the event loop runs other
# tasks (HTTP answers, lease renewal), so no batch, however large, stalls the process.
SLICE_LINES = 4096
# Work the engine does before the loop runs others (an event observed by a rule or a series evaluated is
# one unit: ~5-10 µs, ~10-20 ms a slice), so a timer wave of many series ending at once cannot stall the
# process. It is the most: where units cost more (each creating or ending a series, or with
# PYTHONMALLOC=malloc: 50-100 µs), _Pace takes fewer, so that a slice lasts about SLICE_SECONDS.
ADVANCE_WORK = 2048
SLICE_SECONDS = 0.02
# After a compaction with at most this many series left, what long collector passes froze is unfrozen
# (telemetry/memory.py): the next full pass then walks every object once, 20-40 ms for this many series.
THAW_BELOW_SERIES = 20_000
_LEAST_WORK = 64
# Series changed since the last commit beyond which a batch's advance is committed in parts: a checkpoint's
# cost is linear in what it holds, so a wave of a million ending series is stored in slices too.
CHECKPOINT_CHANGES = 8192
# Lines taken in while the advance of earlier ones was left unfinished for input that was waiting (see
# run_live's `waiting`): bounds what a flood can pile up in the reorder buffer ahead of the advance.
AHEAD_LINES = 50_000
# Series a live checkpoint dumps before the loop serves others (~10-20 ms): a wave of series changed at one
# instant is stored in one checkpoint, dumped in slices.
DUMP_SERIES = 2048
# Replay: lines taken in between two checkpoints (at least; whole batches). A checkpoint stores every series
# changed since the last and the matched events still within `lateness` of the newest: with 4,096-line
# checkpoints most matched events were stored as waiting, then removed, once each.
REPLAY_COMMIT_LINES = 65_536
# A rule's dropped series are logged at most this often (wall time); the metric counts every one.
DROPPED_LOG_MS = 60_000
_log = structlog.get_logger("streamalert.pipeline")


class TransitionSink(Protocol):
    def write(self, transitions: list[Transition]) -> None: ...


@dataclass(slots=True)
class RunSummary:
    lines: int
    malformed: int
    stats: EngineStats


def rule_ttls(rules: list[Rule], lateness_ms: int) -> dict[str, int]:
    """How long each rule's stored series may sit idle in the store before it forgets them."""
    ttl: dict[str, int] = {}
    for rule in rules:
        rule_id = f"{rule.name}:{rule.digest}"
        if rule.kind == "absence":
            ttl[rule_id] = keys.LONG_TTL_MS
        else:
            # A series outlives its window by keep_firing_for, the flapping period, new(F)'s lookback and the
            # offset of a `count offset D` comparison.
            held = rule.keep_ms + (rule.flapping[1] if rule.flapping else 0) + rule.lookback_ms
            held += rule.condition.offset_ms if rule.condition else 0
            ttl[rule_id] = rule.window_ms + rule.for_ms + held + lateness_ms + keys.WINDOW_TTL_MARGIN_MS
    return ttl


async def run(
    engine: Engine,
    source: Source,
    store: Store,
    sink: TransitionSink,
    on_batch: Callable[[Batch], None] | None = None,
    notifier: Notifier | None = None,
    provisional: TransitionSink | None = None,
    *,
    commit_lines: int = REPLAY_COMMIT_LINES,
) -> RunSummary:
    """Drive the engine over a source to its end, checkpointing into the store once batches of at least
    `commit_lines` lines together were taken in, and at the end.

    A checkpoint is committed while the next batches are decoded (one commit in flight, in order). Its
    transitions are handed on, and its batches acknowledged, only once the commit has succeeded: state
    first, so a crash in between can lose a message but never counts an event twice. The engine's output
    does not depend on where checkpoints fall; their cost does (each stores the series changed since the
    last and the events still waiting in the reorder buffer).

    With `provisional` (a store that a later run may continue, `replay --resume`), the state stored last is
    the state at the horizon, before the end-of-input flush: lines still buffered or held stay stored as
    pending, so a continuation takes them in with its own lines exactly as one run over both inputs would.
    What only the end of input decides (finish(): the buffer applied, timers run to the last event time) is
    handed to `provisional` and not stored: not the series it changes, not the transition log. Notifications
    it decides are queued (they are sent or printed), but the notification groups stay as at the horizon.
    """
    ttl = rule_ttls(engine.rules, engine.lateness_ms)
    snapshot = await store.load(engine.rule_ids)
    engine.restore(snapshot)
    if notifier is not None:
        notifier.restore(snapshot.groups)
    lines = malformed = 0
    in_flight: _Commit | None = None
    taken: list[Batch] = []  # batches since the last checkpoint
    since = 0  # their lines
    async for batch in source.batches():
        lines += len(batch.lines)
        malformed += engine.accept_lines(batch.lines)
        engine.advance()
        taken.append(batch)
        since += len(batch.lines)
        if since < commit_lines:
            continue
        if in_flight is not None:
            await in_flight.done(source, sink, on_batch)
        in_flight = await _Commit.start(engine, store, ttl, taken, notifier)
        taken, since = [], 0
    if provisional is None:
        engine.finish()
    if in_flight is not None:
        await in_flight.done(source, sink, on_batch)
    final = provisional is None
    await (await _Commit.start(engine, store, ttl, taken, notifier, final=final)).done(source, sink, on_batch)
    if provisional is not None:
        await _flush_provisional(engine, store, ttl, notifier, provisional)
    return RunSummary(lines, malformed, engine.stats)


async def _flush_provisional(
    engine: Engine, store: Store, ttl: dict[str, int], notifier: Notifier | None, sink: TransitionSink
) -> None:
    """The end-of-input flush of a run a later one may continue: its transitions go to `sink`, and of what it
    changes only the notifications it queues are stored (the engine state stays at the horizon, stored)."""
    engine.finish()
    transitions = engine.drain()
    if notifier is not None:
        step = notifier.step(transitions, engine.horizon_ms, final=True)
        if step.outbox:
            await store.commit(Changes(meta={}, outbox=[n.to_json() for n in step.outbox]), ttl)
    if transitions:
        sink.write(transitions)


class _Commit:
    """One checkpoint on its way to the store, with what must wait for it: transitions and the batches' acks."""

    def __init__(self, task: asyncio.Task[None], transitions: list[Transition], batches: list[Batch]) -> None:
        self.task, self.transitions, self.batches = task, transitions, batches

    @classmethod
    async def start(
        cls,
        engine: Engine,
        store: Store,
        ttl: dict[str, int],
        batches: list[Batch],
        notifier: Notifier | None,
        *,
        final: bool = False,
    ) -> _Commit:
        transitions, changes = _checkpoint(engine, notifier, final=final)
        task = asyncio.ensure_future(store.commit(changes, ttl))
        await asyncio.sleep(0)  # let the commit go out before the next batch keeps this thread busy
        return cls(task, transitions, batches)

    async def done(self, source: Source, sink: TransitionSink, on_batch: Callable[[Batch], None] | None) -> None:
        await self.task
        if self.transitions:
            sink.write(self.transitions)
        for batch in self.batches:
            await source.ack(batch)
            if on_batch is not None:
                on_batch(batch)


async def run_live(  # noqa: PLR0915 (the live loop's steps, in the order they run)
    engine: Engine,
    source: Source,
    store: Store,
    sink: TransitionSink,
    clock: Clock,
    metrics: Metrics,
    health: Health,
    notify: Notify | None = None,
    initial: Sequence[Transition] = (),
    *,
    overlap: bool = False,
    waiting: Callable[[], bool] | None = None,
) -> None:
    """Live mode until the source ends (it ends after `close()`): every batch is taken in at the wall clock,
    committed, then its transitions are handed on and the batch acknowledged. A failing commit is retried
    with backoff while readiness fails; the batch is never acknowledged before its state is durable.
    `initial` transitions (a reload's resolves) are committed and handed on first.

    `overlap`: a batch's commit (and then its hand-on and ack) runs while the next batch is taken in, one
    commit in flight at a time, in order: the next batch's checkpoint waits for it. Its state was captured
    (checkpointed) before the next batch touched the engine, so what is committed and acknowledged is the
    same as without overlap; during a store outage one more batch is taken in, then intake waits. For
    sources whose `ack` may run while `batches()` waits for input (the Vector source: it answers requests).
    Without it, no new input is taken while a commit is retried.

    `waiting`: true when the source holds input that could be taken now (requests queued). A batch's
    advance is then left, between two instants, for the next batch, so a small request does not wait
    behind a flood's backlog of instants (its lines are taken in, committed as pending and answered; the
    advance carries on with the next batch, in the same event-time order). At most AHEAD_LINES lines are
    taken in that way before an advance is finished again."""
    ttl = rule_ttls(engine.rules, engine.lateness_ms)
    snapshot = await retry_store(lambda: store.load(engine.rule_ids), metrics, health)  # ready from here
    engine.restore(snapshot)
    if notify is not None:
        notify.notifier.restore(snapshot.groups)
    source.resume(snapshot.meta)
    dropped = _Dropped(metrics)
    stats = engine.stats
    pace = _Pace()

    in_flight: asyncio.Task[None] | None = None  # overlap: the last batch's commit, hand-on and ack

    async def settle() -> None:
        """Wait for the commit in flight (overlap), its batch acknowledged; re-raise what it raised."""
        nonlocal in_flight
        if in_flight is not None:
            task, in_flight = in_flight, None
            await task

    async def checkpoint(
        position: Mapping[str, int], wall: int, extra: Sequence[Transition] = ()
    ) -> tuple[list[Transition], Changes]:
        """The engine's changes since the last checkpoint, to commit. Every part of a batch's commit carries
        the batch's position: all its lines are in the engine (applied or in the stored pending log) by then."""
        await settle()  # commits go out one at a time, in order
        if notify is not None:
            await notify.refresh(store, wall, engine.horizon_ms, metrics, health)
        notifier = notify.notifier if notify is not None else None
        transitions, changes = await _checkpoint_sliced(engine, notifier, extra, pace.work)
        changes.meta.update(position)  # the source's position, atomically with the effects it led to
        metrics.series.set(engine.series_count())
        return transitions, changes

    async def commit(transitions: list[Transition], changes: Changes, batch: Batch | None = None) -> None:
        """Commit a checkpoint; then hand its transitions on and acknowledge `batch`."""
        watch = Stopwatch()
        await retry_store(functools.partial(store.commit, changes, ttl), metrics, health)
        metrics.store_latency.observe(watch.elapsed())
        if transitions:
            sink.write(transitions)
            for t in transitions:
                metrics.transitions.labels(t.rule, t.state.value).inc()
        if notify is not None:
            notify.committed(changes, metrics)
        if batch is not None:
            await source.ack(batch)

    async def hand_in(position: Mapping[str, int], wall: int, batch: Batch | None) -> None:
        """Checkpoint and commit (in the background with overlap); `batch` is acknowledged after the commit."""
        nonlocal in_flight
        transitions, changes = await checkpoint(position, wall)
        if overlap:
            in_flight = asyncio.create_task(commit(transitions, changes, batch))
            await asyncio.sleep(0)  # let the commit go out before the next batch keeps this thread busy
        else:
            await commit(transitions, changes, batch)

    try:
        if initial:
            await commit(*await checkpoint({}, clock.now_ms(), initial))
        compactions = engine.compactions
        ahead = 0  # lines taken in since an advance last finished
        behind = False  # the last advance was left unfinished for input that was waiting
        async for batch in source.batches():
            wall = clock.now_ms()
            at = wall if batch.arrived_ms is None else min(wall, batch.arrived_ms)  # as of its lines' arrival
            before = (stats.matched, stats.late, stats.untimed, stats.clamped)
            malformed = 0
            lines = batch.lines
            for start in range(0, len(lines), SLICE_LINES):  # in slices: the loop serves others in between
                if start:
                    await asyncio.sleep(0)
                part = lines if len(lines) <= SLICE_LINES else lines[start : start + SLICE_LINES]
                malformed += engine.accept_lines(part, wall_ms=at, lane=batch.lane)
            if batch.timed is not None:
                timed = batch.timed
                engine.accept_timed(timed.records, batch.lane, timed.newest, timed.earliest)
            owed: Batch | None = batch  # acknowledged by the batch's last commit, or earlier
            if behind:  # answered once its lines are stored, before the advance left for it carries on
                await hand_in(batch.meta, wall, batch)
                owed = None
            lagging = source.lagging()
            clock_at = None if lagging else at
            ahead += len(lines)
            behind = False
            if lines:
                await asyncio.sleep(0)  # the last slice taken in and the advance's first are two turns
            while not engine.advance(clock_at, lagging, max_work=pace.start(), max_changes=CHECKPOINT_CHANGES):
                pace.stopped()
                await asyncio.sleep(0)  # a turn of the loop, not a wait for a state
                if engine.changes_pending() >= CHECKPOINT_CHANGES:
                    # a whole instant at worst to finish first: one instant's series
                    await commit(*await checkpoint(batch.meta, wall))
                if waiting is not None and ahead < AHEAD_LINES and engine.between_instants and waiting():
                    behind = True  # input waits: take it in first, the next batch's advance carries this one on
                    break
            else:
                ahead = 0
            dropped.count(engine.stats.series_dropped, wall)
            count_intake(metrics, source.name, len(lines), malformed, before, stats)
            taken = len(lines) if batch.timed is None else len(batch.timed.records)
            if (lines or batch.timed is not None) and engine.newest_ms is not None:
                metrics.processing_lag.observe(max(0.0, (wall - engine.newest_ms) / 1000))
                metrics.batch_size.observe(taken)
            del lines
            await hand_in(batch.meta, wall, owed)
            del batch, owed  # held by the commit in flight only: freed when it is done
            if engine.compactions != compactions:  # most series ended: return what they used to the system
                compactions = engine.compactions
                # First the commit in flight: it holds the ended series' deletes (and the memory store frees their
                # stored forms as it applies them, in steps); freed after the trim, that memory would stay with
                # the process until the next compaction, which may never come.
                await settle()
                rss_before, thawed = resident_mb(), engine.series_count() <= THAW_BELOW_SERIES
                release_memory(thaw=thawed)
                await asyncio.to_thread(give_back)
                _log.info(
                    "memory_given_back",
                    series=engine.series_count(),
                    thawed=thawed,
                    rss_mb_before=rss_before,
                    rss_mb_after=resident_mb(),
                )
        await settle()
    finally:
        if in_flight is not None:  # cancelled or failed meanwhile: the commit in flight goes too (never acked)
            in_flight.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await in_flight


class _Pace:
    """The work budget of the live loop's next engine slice: ADVANCE_WORK at most, fewer while slices that
    used their whole budget took longer than SLICE_SECONDS (twice as many again once they take less than half).
    What a slice decides does not depend on where it is cut, so this bounds the time between two turns of
    the loop without changing any result."""

    def __init__(self) -> None:
        self.work = ADVANCE_WORK
        self._watch = Stopwatch()

    def start(self) -> int:
        """A slice begins: its budget."""
        self._watch = Stopwatch()
        return self.work

    def stopped(self) -> None:
        """The slice began last stopped before its end (its budget spent, or a checkpoint due)."""
        self.work = paced(self.work, self._watch.elapsed())


def paced(work: int, took: float) -> int:
    """The budget after a slice of `work` units that took `took` seconds (see _Pace)."""
    if took > SLICE_SECONDS:
        return max(_LEAST_WORK, int(work * SLICE_SECONDS / took))
    if took < SLICE_SECONDS / 2:
        return min(ADVANCE_WORK, work * 2)
    return work


def _checkpoint(
    engine: Engine, notifier: Notifier | None, *, final: bool = False, extra: Sequence[Transition] = ()
) -> tuple[list[Transition], Changes]:
    """The transitions decided since the last checkpoint (after `extra`, decided outside the engine), and the
    checkpoint that records them in the log together with the notification groups they changed and the
    notifications due (the outbox)."""
    finish(engine.instant_steps(None))
    transitions = [*extra, *engine.drain()]
    return transitions, _noted(engine, notifier, transitions, engine.checkpoint(), final=final)


async def _checkpoint_sliced(
    engine: Engine, notifier: Notifier | None, extra: Sequence[Transition], work: int
) -> tuple[list[Transition], Changes]:
    """`_checkpoint` for the live loop: the changed series dumped DUMP_SERIES at a time, the loop serving others
    in between (nothing else changes the engine meanwhile: only this loop does); an instant a work budget
    cut is finished first, `work` units at a time (see _Pace)."""
    await stepped(engine.instant_steps(work))
    transitions = [*extra, *engine.drain()]
    changes = await stepped(engine.checkpoint_steps(DUMP_SERIES))
    return transitions, _noted(engine, notifier, transitions, changes)


def _noted(
    engine: Engine, notifier: Notifier | None, transitions: list[Transition], changes: Changes, *, final: bool = False
) -> Changes:
    """The checkpoint with the transitions it records and the notification groups and notifications due that
    they lead to."""
    changes.transitions = [transition_json(t) for t in transitions]
    if notifier is not None:
        step = notifier.step(transitions, engine.horizon_ms, final=final)  # final: replay's end
        changes.groups, changes.groups_deleted = step.groups, step.groups_deleted
        changes.outbox = [n.to_json() for n in step.outbox]
    return changes


class _Dropped:
    """Series the caps refused: every one counted in `streamalert_series_dropped_total{rule}`, and logged at
    most once a minute per rule (an operator alerts on the metric; the log says which rule and how many)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.counted: dict[str, int] = {}
        self.logged: dict[str, tuple[int, int]] = {}  # rule -> (wall ms of the last log, count then)

    def count(self, dropped: dict[str, int], wall: int) -> None:
        for rule, total in dropped.items():
            before = self.counted.get(rule, 0)
            if total == before:
                continue
            self.metrics.series_dropped.labels(rule).inc(total - before)
            self.counted[rule] = total
            last, at_log = self.logged.get(rule, (None, 0))
            if last is None or wall - last >= DROPPED_LOG_MS:
                _log.warning("series_dropped", rule=rule, dropped=total - at_log, total=total)
                self.logged[rule] = (wall, total)


@dataclass(slots=True)
class Notify:
    """Live mode's notification stage: the notifier, silences refreshed from the store, the sender's wake-up."""

    notifier: Notifier
    wake: Callable[[], None] = lambda: None
    refresh_ms: int = 1000
    _next_refresh: int = 0
    _counted: tuple[int, int, int] = (0, 0, 0)
    _template_errors: dict[tuple[str, str], int] = field(default_factory=dict)

    async def refresh(self, store: Store, wall: int, horizon: int, metrics: Metrics, health: Health) -> None:
        """Silences as stored (API-created ones included), read at most every `refresh_ms` of wall time; the
        store drops those ended before the horizon (flushes run in event time, behind the wall clock)."""
        if wall < self._next_refresh:
            return
        self._next_refresh = wall + self.refresh_ms
        raw = await retry_store(functools.partial(store.silences, horizon), metrics, health)
        silences = []
        for record in raw:
            try:
                silences.append(Silence.from_json(record))
            except (ValueError, KeyError, TypeError):  # written by hand into Redis: skipped, not fatal
                _log.warning("silence_unreadable")
        self.notifier.set_silences(silences)

    def committed(self, changes: Changes, metrics: Metrics) -> None:
        counts = self.notifier.counts
        silenced, deduplicated, time_muted = self._counted
        metrics.alerts_silenced.inc(counts.silenced - silenced)
        metrics.alerts_deduplicated.inc(counts.deduplicated - deduplicated)
        metrics.alerts_time_muted.inc(counts.time_muted - time_muted)
        self._counted = (counts.silenced, counts.deduplicated, counts.time_muted)
        for (kind, name), failures in counts.template_errors.items():
            metrics.template_errors.labels(kind, name).inc(failures - self._template_errors.get((kind, name), 0))
        self._template_errors = dict(counts.template_errors)
        if changes.outbox:
            self.wake()


@dataclass(slots=True)
class Health:
    """What readiness reports: the store reachable and the last commit through."""

    ready: bool = False
    store_error: str | None = None


def count_intake(
    metrics: Metrics, name: str, lines: int, malformed: int, before: tuple[int, int, int, int], stats: EngineStats
) -> None:
    matched, late, untimed, clamped = before
    metrics.events_in.labels(name).inc(lines)
    metrics.events_malformed.labels(name).inc(malformed)
    metrics.events_matched.labels(name).inc(stats.matched - matched)
    metrics.events_late.labels(name).inc(stats.late - late)
    metrics.events_untimed.labels(name).inc(stats.untimed - untimed)
    metrics.events_clamped.labels(name).inc(stats.clamped - clamped)


async def retry_store(call: Callable[[], Awaitable[T]], metrics: Metrics, health: Health) -> T:
    """The one place that retries the store: exponential backoff with jitter, for as long as it takes;
    readiness fails meanwhile and recovers with the first success."""
    try:
        result = await call()  # the common case, without the retrying machinery's cost (~50 us a call)
    except (RedisError, OSError) as error:
        failed: BaseException | None = error
        retrying = AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0),
            retry=retry_if_exception_type((RedisError, OSError)),
            before_sleep=lambda state: _unready(state.outcome, metrics, health),
            reraise=True,
        )

        async def attempt() -> T:
            nonlocal failed
            if failed is not None:  # the first attempt is the call above: its failure, then backoff
                first, failed = failed, None
                raise first
            return await call()

        result = await retrying(attempt)
    if not health.ready or health.store_error is not None:
        health.store_error = None
        health.ready = True
        metrics.ready.set(1)
    return result


def _unready(outcome: Any, metrics: Metrics, health: Health) -> None:
    error = outcome.exception() if outcome is not None else None
    health.ready = False
    health.store_error = type(error).__name__ if error is not None else "unknown"
    metrics.ready.set(0)
    metrics.store_retries.inc()
    _log.warning("store_unavailable", error=health.store_error)
