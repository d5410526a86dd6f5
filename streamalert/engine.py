"""The rule engine: orders events within `lateness`, updates series state and turns changes into transitions.

Time is the event time of the input. `newest` is the newest event time accepted; events up to `lateness`
behind it are placed at their own time, older ones are dropped as late. Events wait in a reorder buffer and
are applied in time order once they fall behind the horizon `newest - lateness`, so the output does not
depend on arrival order within that bound. Every instant T is handled the same way: apply all events at T,
then evaluate every series touched by them or by a timer due at T, in (rule, group) order.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import compress, islice
from typing import Any, cast

import msgspec
import orjson

from streamalert.alerts.flap import Flap, FlapEmit, flap_step
from streamalert.alerts.lifecycle import INACTIVE, Change, Phase, step
from streamalert.config.rules import Rule, label_value
from streamalert.decode import (
    DECODE_ERRORS,
    LINE_FIELD,
    MILLIS,
    MISSING,
    decode_line,
    get_path,
    parse_time,
    time_from,
)
from streamalert.durations import format_duration
from streamalert.model import AlertState, Fields, Transition
from streamalert.rules.codegen import compile_rules
from streamalert.rules.kind import KIND_TYPES, Kind, KindSeries, kind_of
from streamalert.rules.kinds import DistinctSeries, QuantileSeries, with_parts
from streamalert.rules.matchers import as_number
from streamalert.rules.series import AbsenceSeries, AggregateSeries, CountSeries, Series
from streamalert.stamps import canonical, chunk_bounds, late_lines, stamp_ms
from streamalert.state.base import Changes, Snapshot
from streamalert.steps import Steps, finish
from streamalert.telemetry.memory import freeze_after_long_passes

# A series' group key: the label values of `group_by`, in its order, as a tuple; for a rule grouping by one
# field, the value itself (a str: a 1-tuple per series cost 48 bytes). `_labels` gives the tuple either way.
GroupKey = tuple[str, ...] | str
Labels = tuple[str, ...]  # a group key as a tuple: what leaves the engine (firing, sampler) and what is stored
SeriesRef = tuple[int, GroupKey]
AnySeries = Series | KindSeries
DEFAULT_LATENESS_MS = 30_000
DEFAULT_MAX_DELAY_MS = 10_000
DEFAULT_FUTURE_SKEW_MS = 60_000
# Caps on live series, sized for a sidecar: about 0.3 KB per idle count series in memory state (README,
# "State"), so a full engine holds about 0.3 GB; one runaway `group_by` cannot take every other rule's room.
DEFAULT_MAX_SERIES_PER_RULE = 100_000
DEFAULT_MAX_SERIES = 1_000_000
# Python dicts and the timers heap never shrink on delete: once the live series fall below a quarter of
# their high-water mark (of at least this many), the per-series tables are rebuilt at their current size.
_COMPACT_FROM = 4096
_TAIL = 3  # rebuilds of smaller tables after one of at least _COMPACT_FROM series (Engine._after_run)
_NEVER = -(2**62)
# Timers due in a later slot of 2**_SLOT_BITS ms than the one being processed wait in a wheel of per-slot
# lists of group keys (8 bytes a timer, its due time being the series' own `due`); a slot's timers move into
# the heap of (due, rule, group) when the engine reaches the slot. A heap entry per idle series cost 72 bytes.
_SLOT_BITS = 10
# Timers a wheel slot moves into the heap for one unit of work (see Engine._reach), in parts of _REACH_PART.
_REACH_KEYS = 4
_REACH_PART = 256
_STAMP_OF = operator.attrgetter("a0")  # `timestamp` of a record (codegen gives the time keys a0..a3)
_TIME_OF = operator.itemgetter(0)  # of a buffered event (_Pending)
_RULES_OF = operator.itemgetter(4)
_TIME_LINE = operator.itemgetter(0, 2)  # a buffered event's place in the order instants observe events

_FOREVER = 2**62
# What reading a stored series that this engine's code did not write can raise (orjson's decode error is a
# ValueError): turned into StoredStateError, which names the rule and the series.
_UNREADABLE = (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError)
_BULK_LEAST = 64  # a bounded run takes the bulk path for at least this many events (Engine._bulk_cut)
# The collector's thresholds in a process that runs an engine (`streamalert run` and `replay`, cli.py; the
# benchmarks in bench/). The interpreter's default young threshold, 700, starts a young collection every 700
# container allocations; a stream allocates a few per line (records, dicts of decoded lines that are freed
# again), so most collections find nothing to free and move what the engine still holds (series, buffered
# events) into the older generations, whose passes then walk it. Each pass over the young or middle
# generation is one step of the event loop that walks what survived since the last one: 5,000 young and a
# middle pass every 3 young ones keep those steps to a few milliseconds under a flood of new series (20,000
# and the default 10 let a middle pass walk 200,000 objects: 40-90 ms under PYTHONMALLOC=malloc); full
# passes are kept short by freezing (telemetry/memory.py, freeze_after_long_passes). bench/README.md,
# "Collector passes under a flood", has the measurements.
COLLECTOR_THRESHOLDS = (5_000, 3, 5)
_LANE = "lane:"  # checkpoint meta key prefix of a lane's newest event time


class StoredStateError(ValueError):
    """A checkpoint's stored series cannot be read (written by other code, or damaged): rule and series named."""


@dataclass(slots=True)
class EngineStats:
    """What happened to accepted input, for the run summary and metrics."""

    matched: int = 0
    late: int = 0
    untimed: int = 0  # had no usable time and took the newest event time
    untimed_dropped: int = 0  # had no usable time before any event time was known
    beyond_until: int = 0
    # Stamped more than `future_skew` ahead of the wall clock (live mode) and placed at the wall clock, or
    # (replay) ahead of the newest time with the next line back in the stream, and placed at that newest time.
    clamped: int = 0
    transitions: int = 0
    # Matched events that would have started a series beyond `max_series_per_rule` or `max_series`, by rule
    # name: the event is not applied to any series (it is still in `matched`).
    series_dropped: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Prepared:
    """Per-rule constants the hot path needs, computed once."""

    rule: Rule
    rule_id: str
    key_of: Callable[[Fields], GroupKey]  # the group key of a matched record (see _key_function)
    expect: tuple[GroupKey, ...] = ()  # rule.expect as group keys
    capacity: int = 0
    count_test: Callable[[int], bool] | None = None
    window_s: float = 0.0
    field: str | None = None
    grows_only: bool = False  # a count condition that events leaving the window cannot make true
    rate: bool = False  # the value is count / window in seconds
    min_count: int = 0  # grows_only: the fewest events in the window that can make the condition hold
    # A `count >= n` (or `>`) rule without flapping whose inactive series can take runs of events in bulk
    # while they stay below min_count (see Engine._apply_runs).
    bulk: bool = False
    # A quantile rule without flapping: its inactive series take runs of events in one step while no instant
    # of the run makes the condition hold (QuantileSeries.run, Engine._apply_quantile_run).
    quantile_runs: bool = False
    kind: Kind | None = None  # ratio, quantile, distinct: series from rules/kinds.py


# A buffered event: (time, arrival sequence, raw line, kept, matched rule indexes). Tuples compare in C; the
# sequence is unique, so comparison never reaches the later items. The buffer is a list appended to in
# arrival order and sorted when instants run: arrival is nearly in time order, so that sort is a merge of a
# few runs, cheaper than a heap push and pop per event.
# `kept` is what the intake computed that applying the event needs: when every matched rule's series read
# only the group key (count and absence rules), the group key (one rule matched) or a tuple of them, one per
# matched rule; else None (the line is decoded again when the event is applied) or, made by _apply_runs for
# the events of a quantile run that kept nothing, the dict of the fields it decoded. The matched rule
# indexes are a tuple, not the matcher's list.
# The buffer holds up to `lateness` of matched events and reaches the collector's old generation,
# whose full passes walk every tracked object in it; a tuple of ints, strings, bytes, None and such tuples
# is untracked once the collector has seen what it holds, while a dict or a list inside keeps it tracked
# (bench/README.md, "Series benchmark"). The common event, one rule, holds the key itself, not a tuple of
# one key: each level of tuples can take the collector one more pass to untrack.
# An event of one rule whose series read a sample (a field's number, a quantile's or distinct count's value,
# a ratio's verdict) keeps (_SAMPLED, group key, sample) instead: applying it decodes nothing. A group key's
# first item is a str and a tuple of keys' a key, so the marker in front tells this form apart.
# Rules with a sample whose key and sample read only top-level fields take them from the matcher's record,
# whose type has those fields too (_record_reader): the line is decoded once; count and absence rules too
# when the matchers read their group_by fields anyway. (A field added to the record is decoded on every line
# that has it: worth it for a sampled rule, which takes a share of the traffic, such as request latencies;
# not for a count of rare errors by host, whose few matched lines are cheaper decoded whole.) Every path
# that buffers a line (intake, held line, restore, replica) keeps it by Engine._kept, so they agree on which
# lines are malformed: a line the full decoder would refuse for a field no rule reads (bad UTF-8, a number
# out of range) is taken when every rule it matches reads from the record.
_Kept = Fields | GroupKey | tuple[GroupKey, ...] | tuple[object, GroupKey, Any] | None  # see above
_Reader = Callable[[Any], _Kept]  # a rule's kept value of a matched record (see _record_reader)

# A replayed line held until the next line of its lane tells whether the stream jumped: (time, raw line,
# matched rule indexes, kept). Checkpointed whole (Changes.held), so a restart holds it again.
_Held = tuple[int, bytes, Sequence[int], _Kept]
_SAMPLED = object()
_UNSET = object()  # Engine._observe: no sample given


def _is_sampled(kept: _Kept) -> bool:
    """Whether a buffered event's `kept` is (_SAMPLED, key, sample) (see _Kept)."""
    return type(kept) is tuple and len(kept) == 3 and kept[0] is _SAMPLED


def _is_key(kept: _Kept) -> bool:
    """Whether a buffered event's `kept` holds group keys (a str or tuple), not fields (a dict), a sample or
    nothing."""
    return kept is not None and type(kept) is not dict and not _is_sampled(kept)


_Pending = tuple[int, int, bytes, _Kept, Sequence[int]]


def _slow_order(item: tuple[_Pending, int]) -> tuple[int, int, int]:
    """(event, rule) in time order, without comparing the events' records (_apply_runs)."""
    return item[0][0], item[0][1], item[1]


# (rule index, group, instant, window value, phase after the instant): every value the engine computes for a
# series, for `replay --report` (streamalert/report/). An absence series gives its silence in seconds.
Sampler = Callable[[int, Labels, int, float, Phase], None]


@dataclass(slots=True)
class _Instant:
    """An instant begun but not finished: a work budget ran out inside it (a wave of many series at one
    millisecond). Its events are observed in order, then its series evaluated in order; the next call
    continues where this one stopped, before anything else, so the result is that of one whole instant."""

    now: int
    events: list[_Pending]
    observed: int = 0  # events[:observed] are applied
    touched: dict[SeriesRef, None] = field(default_factory=dict)
    refs: list[SeriesRef] | None = None  # the series to evaluate, once every event is observed and timer popped
    evaluated: int = 0  # refs[:evaluated] are evaluated


class Engine:
    """Evaluates compiled rules over a stream of records in event time."""

    def __init__(  # noqa: PLR0915 (the engine's state, one attribute a statement)
        self,
        rules: list[Rule],
        lateness_ms: int = DEFAULT_LATENESS_MS,
        until_ms: int | None = None,
        max_delay_ms: int = DEFAULT_MAX_DELAY_MS,
        future_skew_ms: int = DEFAULT_FUTURE_SKEW_MS,
        max_series_per_rule: int = DEFAULT_MAX_SERIES_PER_RULE,
        max_series: int = DEFAULT_MAX_SERIES,
    ):
        self.rules = rules
        self.lateness_ms = lateness_ms
        self.until_ms = until_ms
        self.max_delay_ms = max_delay_ms  # live mode: how far behind the wall clock a caught-up source may run
        self.future_skew_ms = future_skew_ms  # how far ahead of the wall clock (live) or the stream a stamp may be
        self.max_series_per_rule = max_series_per_rule  # caps on live series (expected absence groups exempt)
        self.max_series = max_series
        self._live = 0  # live series of all rules
        self._peak = 0  # the most live series since the tables were last rebuilt
        self._tail = 0  # rebuilds still allowed below _COMPACT_FROM series: after a large one (see _after_run)
        self._wall: int | None = None
        self._ceiling = _FOREVER  # the latest usable stamp of the batch being taken in (wall + skew, live)
        self.stats = EngineStats()
        self._prep = [_prepare(rule) for rule in rules]
        # Records also hold the fields that rules with a sample read (see _record_reader); count and absence
        # rules take theirs from the record only when the matchers decode them anyway.
        reads = [name for prep in self._prep if not _key_only(prep) for name in _record_reads(prep) or ()]
        self._rules = compile_rules([r.match_spec for r in rules], [r.extract for r in rules], reads)
        self._series: list[dict[GroupKey, AnySeries]] = [{} for _ in rules]
        # (due, rule index, group): a timer is current while its series' `due` equals it; others are skipped.
        # The heap holds the timers of slots reached (see _SLOT_BITS); later ones wait in the wheel.
        self._timers: list[tuple[int, int, GroupKey]] = []
        self._wheel: dict[int, dict[int, list[GroupKey]]] = {}  # slot -> rule index -> groups with a timer in it
        self._slots: list[int] = []  # the wheel's slots, a heap
        self._wheeled = 0  # timers in the wheel (current or stale)
        self._reached = _NEVER >> _SLOT_BITS  # slots before this one are in the heap
        self._buffer: list[_Pending] = []
        # The buffer's length when _run_until last left it sorted: anything that changes it other than by
        # appending (take_accepted) resets this. A bounded live advance calls _run_until many times between
        # two intakes; re-sorting a sorted buffer of `lateness` worth of events each time is still n
        # comparisons, which a flood turns into most of the loop's time.
        self._sorted_len = 0
        self._newest: int | None = (
            None  # the newest event time of all lanes (of the lane being taken in, during intake)
        )
        self._lanes: dict[str, int] = {}  # the newest event time per lane (Kafka partition); one lane "" elsewhere
        self._held: dict[str, _Held] = {}  # replay: a line far ahead of its lane, until the next line decides
        self._held_stored: dict[str, bytes] = {}  # the held lines as the last checkpoint stored them
        self._lane = ""  # the lane being taken in
        self._done_before = _NEVER  # every instant before this one has been processed
        self._min_accepted: int | None = None
        self._first_time: int | None = None
        self._seq = 0
        self._out: list[Transition] = []
        self._dirty: set[SeriesRef] = set()
        self._deleted: set[SeriesRef] = set()
        # The events taken in since the last checkpoint (buffered ones: shared, not copies); a checkpoint stores
        # those still waiting.
        self._pending_new: list[_Pending] = []
        self._partial: _Instant | None = None  # an instant a work budget cut (see _Instant)
        self._budget: float = math.inf  # work left in the current bounded run
        self._max_changes = _FOREVER  # a bounded run stops between instants once this many series changed
        self.sampler: Sampler | None = None  # None (the default) costs one test per evaluation
        self.compactions = 0  # times the series tables were rebuilt smaller (most series ended)
        self._flaps: dict[SeriesRef, Flap] = {}  # series of rules with `flapping:` that changed lately
        self._parts: dict[SeriesRef, set[int]] = {}  # the chunks of quantile series stored apart (_store_parts)
        self._orphans: dict[str, list[bytes]] = {}  # stored parts no stored series named (restore)
        self._bulk_runs = True  # False: every event takes the per-instant path (the property tests compare)
        self._bulk_least = _BULK_LEAST  # (the property tests lower it to reach bounded runs' bulk path)
        self._keys_of = [prep.key_of for prep in self._prep]
        self._singles = [(i,) for i in range(len(rules))]  # the matched rules of an event of one rule: shared
        # Per rule: its series read nothing of an event but the group key (count and absence rules), so the
        # intake keeps the key with the buffered event instead of the line being decoded again (see _Pending).
        self._key_only = [_key_only(prep) for prep in self._prep]
        # Per rule, the others: what its series observe of an event (see _Kept), taken at intake too.
        self._sample_of = [_sample_function(prep) for prep in self._prep]
        # Per rule: what the intake keeps of its event read from the matcher's record (see _record_reader), or
        # None when the line must be decoded in full.
        self._readers = [_record_reader(prep, self._rules.attrs) for prep in self._prep]
        self._any_bulk = any(prep.bulk or prep.quantile_runs for prep in self._prep)

    # ---- input ---------------------------------------------------------------------------------------------

    @property
    def newest_ms(self) -> int | None:
        return self._newest

    def accept_lines(self, lines: Sequence[bytes], wall_ms: int | None = None, lane: str = "") -> int:
        """Decode raw lines and take them in; return how many were not JSON objects.

        A record takes the newest time when it has none, is dropped as late when it is more than `lateness`
        behind the newest (or before an instant already processed), and waits in the reorder buffer when it
        matches a rule. Most batches are well-formed and span a few seconds; they take a bulk path that
        decides lateness and the clock for the whole batch at once. Any other batch takes the line-by-line
        loop. Both give the same result (the property tests replay the same events in many batchings).

        In live mode `wall_ms` is the wall clock: a record stamped more than `future_skew` ahead of it (a host
        with a skewed clock) is placed at the wall clock instead and counted as clamped, so it cannot drag
        every window forward. In replay a line that far ahead of the newest time is held until the next line
        shows whether the stream jumped (see `_accept_each`).

        `lane` names an ordered part of the input (a Kafka partition). Lateness is measured against the
        newest time of the record's own lane, so a consumer reading one partition's backlog after another's
        newer records drops nothing; `advance` keeps the clock at the slowest lane that still lags.
        """
        self._complete()
        self._ceiling = _FOREVER if wall_ms is None else wall_ms + self.future_skew_ms
        self._wall = wall_ms
        self._lane = lane
        overall, self._newest = self._newest, self._lanes.get(lane)
        try:
            malformed = 0 if self._accept_bulk(lines) else self._accept_each(lines)
        finally:
            if self._newest is not None:
                self._lanes[lane] = self._newest
                overall = self._newest if overall is None else max(overall, self._newest)
            self._newest = overall
        return malformed

    def _accept_bulk(self, lines: Sequence[bytes]) -> bool:
        """The bulk path, for a batch of JSON objects stamped "YYYY-MM-DDTHH:MM:SS.mmmZ" on one date, none
        after `until`. Such stamps order like their times, so C-speed list operations find the few lines
        that arrive out of order; only those, and matched lines, have their time computed.
        Returns False, having changed nothing, for any other batch."""
        if not lines:
            return True
        rules = self._rules
        try:
            records = list(map(rules.decode, lines))
        except DECODE_ERRORS:
            return False
        stamps: list[str] = list(map(_STAMP_OF, records))
        if not canonical(stamps):
            return False
        bounds = chunk_bounds(stamps)  # per chunk of late_lines, which takes them too
        low, high = min([b[0] for b in bounds]), max([b[1] for b in bounds])
        low_ms, high_ms = parse_time(low), parse_time(high)
        if low_ms is None or high_ms is None or low[:10] != high[:10]:
            return False  # an impossible date (February 30), or a batch across midnight: line by line
        newest = _NEVER if self._newest is None else self._newest
        lateness = self.lateness_ms
        if high_ms > (_FOREVER if self.until_ms is None else self.until_ms) or high_ms > self._ceiling:
            return False
        base = low_ms if self._newest is None else newest  # the first line of the input is never held
        if self._wall is None and (self._lane in self._held or high_ms > base + self.future_skew_ms):
            return False  # replay: some line may be far ahead of the stream (held, see _accept_each)
        late = late_lines(stamps, max(self._done_before, newest - lateness), lateness, low_ms, bounds)
        events = self._matched_events(lines, records, stamps, late)
        if events is None:
            return False
        self.stats.late += len(late)
        if len(late) == len(stamps):
            return True
        if high_ms > newest:
            self._newest = high_ms  # the highest stamp is never late once any line is not
        if self._first_time is None:
            earliest = low_ms if not late else min(s for k, s in enumerate(stamps) if k not in late)
            earliest_ms = parse_time(earliest)
            if earliest_ms is not None and (self._min_accepted is None or earliest_ms < self._min_accepted):
                self._min_accepted = earliest_ms
        self._buffer += events
        self._pending_new += events
        self.stats.matched += len(events)
        self._seq += len(events)
        return True

    def _matched_events(
        self, lines: Sequence[bytes], records: list[Any], stamps: list[str], late: set[int]
    ) -> list[_Pending] | None:
        """The bulk path's buffered events of the matched lines that are not late, numbered from the next
        sequence; None when the full decoder refuses one of them (the batch goes line by line, which counts
        it as malformed). Nothing changes here. What applying an event needs is kept (see _Pending). Stamps of
        one second share its epoch ms: only the milliseconds of the others are read."""
        rules = self._rules
        singles, readers, kept_of = self._singles, self._readers, self._kept
        events: list[_Pending] = []
        second, second_ms, millis_of = "\0", 0, MILLIS
        seq = self._seq
        matches = list(map(rules.match, records))
        try:
            for k in compress(range(len(matches)), matches):  # the matched lines (most match nothing), at C speed
                if k in late:
                    continue
                matched, line = matches[k], lines[k]
                if len(matched) == 1 and (read := readers[matched[0]]) is not None:  # the common case, inlined
                    hit: tuple[int, ...] = singles[matched[0]]
                    kept: _Kept = read(records[k])
                else:
                    hit, kept = kept_of(matched, records[k], line)
                stamp = stamps[k]
                if stamp.startswith(second):
                    time_ms = second_ms + millis_of[stamp[20:23]]
                else:
                    first_ms = stamp_ms(stamp)
                    if first_ms is None:
                        raise AssertionError("stamps were checked with the batch")
                    time_ms = first_ms
                    second, second_ms = stamp[:20], first_ms - millis_of[stamp[20:23]]
                seq += 1
                events.append((time_ms, seq, line, kept, hit))
        except DECODE_ERRORS:
            return None
        return events

    def _kept(self, matched: Sequence[int], record: Any, line: bytes) -> tuple[tuple[int, ...], _Kept]:
        """A matched line's rules as buffered and what the intake keeps of it (see _Kept), read from the
        matcher's `record` when every matched rule has a reader, else from the line decoded in full, which
        raises one of DECODE_ERRORS when it refuses the line."""
        readers = self._readers
        if len(matched) == 1:
            i = matched[0]
            read = readers[i]
            if read is not None:
                return self._singles[i], read(record)
            fields = self._rules.fields(line)
            key = self._keys_of[i](fields)
            return self._singles[i], key if self._key_only[i] else (_SAMPLED, key, self._sample_of[i](fields, line))
        hit, key_only = tuple(matched), self._key_only
        if all(key_only[i] for i in hit):
            if all(readers[i] is not None for i in hit):
                return hit, tuple([cast(GroupKey, cast(_Reader, readers[i])(record)) for i in hit])
            fields = self._rules.fields(line)
            return hit, tuple([self._keys_of[i](fields) for i in hit])
        self._rules.fields(line)  # applying the event decodes the line: a line refused here never gets there
        return hit, None

    def _accept_each(self, lines: Iterable[bytes]) -> int:  # noqa: PLR0915 (one flat loop, measured in bench/)
        """The line-by-line path: any mix of malformed, untimed, shuffled or differently stamped lines.

        Decoding and the common time spelling are inlined here (the general rules live in decode.py).
        """
        decode, match, millis_of = self._rules.decode, self._rules.match, MILLIS
        second, second_ms = "\0", 0  # the last standard stamp's "YYYY-MM-DDTHH:MM:SS." and its epoch ms
        unset, kept_of = msgspec.UNSET, self._kept
        stats, lateness = self.stats, self.lateness_ms
        until = _FOREVER if self.until_ms is None else self.until_ms
        ceiling, wall = self._ceiling, self._wall
        done_before, min_accepted = self._done_before, self._min_accepted
        newest = _NEVER if self._newest is None else self._newest  # a sentinel, not None: one compare per line
        track_min = self._first_time is None  # the earliest time only matters until the first instant runs
        floor = max(done_before, newest - lateness)
        buffer, pending_new, seq = self._buffer, self._pending_new, self._seq
        # Replay: a line more than `future_skew` ahead of the newest time is held until the next timed line
        # of the lane: one near it or beyond confirms a jump of the stream (the held line keeps its time), one
        # back near the stream shows it stood alone (placed at the newest time, like live mode's clamp).
        hold, skew = wall is None, self.future_skew_ms
        held = self._held.pop(self._lane, None)
        malformed = 0
        for line in lines:
            try:
                record = decode(line)
            except DECODE_ERRORS:
                malformed += 1
                continue
            stamp = record.a0  # `timestamp` (codegen gives the time keys the attributes a0..a3)
            # Fast path for "2026-01-26T09:15:00.123Z" in the same second as the last such stamp: only the
            # milliseconds are read. Everything else goes through decode.parse_time.
            if type(stamp) is str and stamp.startswith(second) and len(stamp) == 24 and stamp[23] == "Z":
                millis = millis_of.get(stamp[20:23])
                time_ms = second_ms + millis if millis is not None else None
            elif stamp is unset or stamp is None:
                time_ms = time_from((record.a1, record.a2, record.a3))  # @timestamp, time, ts
            else:
                time_ms = parse_time(stamp)
                if time_ms is not None and type(stamp) is str and len(stamp) == 24 and stamp[19::4] == ".Z":
                    millis = millis_of.get(stamp[20:23])
                    if millis is not None:
                        second, second_ms = stamp[:20], time_ms - millis
            matched: Sequence[int] = match(record)
            kept: _Kept = None
            if matched:
                try:  # before the clock moves: a line refused here is malformed, nothing else
                    matched, kept = kept_of(matched, record, line)
                except DECODE_ERRORS:
                    malformed += 1
                    continue
            if time_ms is not None and time_ms > ceiling:
                time_ms = wall  # stamped too far ahead of the wall clock: placed at the wall clock
                stats.clamped += 1
            if time_ms is None:
                if newest == _NEVER:
                    stats.untimed_dropped += 1
                    continue
                time_ms = newest
                stats.untimed += 1
            elif time_ms > until:
                stats.beyond_until += 1
                continue
            elif hold:
                if held is not None:  # this line decides whether the held one was a jump of the stream
                    at, held_line, held_rules, held_kept = held
                    held = None
                    if not (time_ms > newest + skew and time_ms >= at - skew):
                        at = newest  # back near the stream: the held line was alone out there
                        stats.clamped += 1
                    if at > newest:
                        newest = at
                        floor = max(newest - lateness, done_before)
                    if held_rules:
                        seq += 1
                        event: _Pending = (at, seq, held_line, held_kept, held_rules)
                        buffer.append(event)
                        pending_new.append(event)
                if newest != _NEVER and time_ms > newest + skew:
                    held = (time_ms, line, matched, kept)
                    continue
            if time_ms < floor:
                stats.late += 1
                continue
            if time_ms > newest:
                newest = time_ms
                floor = newest - lateness
                floor = max(floor, done_before)
            if track_min and (min_accepted is None or time_ms < min_accepted):
                min_accepted = time_ms
            if matched:
                seq += 1
                event = (time_ms, seq, line, kept, matched)  # no fields: see _Pending
                buffer.append(event)
                pending_new.append(event)
        if held is not None:
            self._held[self._lane] = held
        stats.matched += seq - self._seq
        self._seq, self._min_accepted = seq, min_accepted
        self._newest = None if newest == _NEVER else newest
        return malformed

    def take_accepted(self) -> tuple[list[tuple[int, bytes]], int | None]:
        """Intake only (a replica that forwards to the evaluator): the matched records accepted since the last
        call as (time, raw line) in arrival order, and the earliest time accepted among all their lines. The
        buffer is emptied: an intake engine never advances."""
        taken = sorted(self._buffer, key=operator.itemgetter(1))
        earliest = self._min_accepted
        self._buffer, self._pending_new, self._min_accepted = [], [], None
        self._sorted_len = 0
        return [(time_ms, line) for time_ms, _, line, _, _ in taken], earliest

    def lane_newest(self, lane: str) -> int | None:
        return self._lanes.get(lane)

    def set_lane(self, lane: str, newest: int | None) -> None:
        """Continue a lane from a stored newest time (an intake taking a partition over from another replica)."""
        if newest is None:
            self._lanes.pop(lane, None)
        else:
            self._lanes[lane] = newest

    def accept_timed(
        self, records: Sequence[tuple[int, bytes]], lane: str, newest: int | None, earliest: int | None
    ) -> None:
        """Evaluator side of replicas: records a replica's intake has already timed, with lane-late ones
        dropped, plus the lane's newest time and the earliest time among all the lines they came with. Only
        what the intake cannot know is decided here: a record before an instant already processed is late."""
        self._complete()
        seq, buffer, pending_new = self._seq, self._buffer, self._pending_new
        for time_ms, line in records:
            if time_ms < self._done_before:
                self.stats.late += 1
                continue
            try:
                record = self._rules.decode(line)
                matched = self._rules.match(record)
                if not matched:
                    continue
                hit, kept = self._kept(matched, record, line)
            except DECODE_ERRORS:
                continue  # the intake decoded it; a replica with other rules may forward what we cannot use
            seq += 1
            event: _Pending = (time_ms, seq, line, kept, hit)
            buffer.append(event)
            pending_new.append(event)
        self.stats.matched += seq - self._seq
        self._seq = seq
        if newest is not None:
            lane_newest = self._lanes.get(lane)
            self._lanes[lane] = newest if lane_newest is None else max(lane_newest, newest)
            self._newest = newest if self._newest is None else max(self._newest, newest)
        if earliest is not None and self._first_time is None:
            self._min_accepted = earliest if self._min_accepted is None else min(self._min_accepted, earliest)

    def advance(
        self,
        wall_ms: int | None = None,
        lagging: Iterable[str] = (),
        max_work: int | None = None,
        max_changes: int | None = None,
    ) -> bool:
        """Process every instant strictly before the horizon: clock - lateness. True when done; False when
        it stopped after `max_work` units of work (an event observed by a rule, a series evaluated), so a
        live loop can yield; calling again continues. The budget may run out inside an instant (a wave of
        many series at one millisecond): `horizon_ms` is then that instant, and the next call to anything
        (advance, finish, accept, checkpoint) finishes it first. With `max_changes` it also stops between
        two instants once that many series changed since the last checkpoint, so a caller can store them in
        parts. Unbounded, the result is the same.

        The clock is the newest event time. While some lanes still lag (a consumer reading a backlog), it is
        the newest time of the slowest of them, and it does not move while a lagging lane has given no event
        yet: the records still to come from those lanes are not late. In live mode, while every source is
        caught up, the caller passes the wall clock and the clock is at least `wall - max_delay`: timers
        (absence, `for`, expiry) then run even when no record arrives at all. An engine that never saw an
        event starts its clock there too, so expected absence groups fire `absent_for` after start.
        """
        if not self._bounded(max_work, max_changes):
            return False
        clock = self._newest
        behind = [self._lanes.get(lane) for lane in lagging]
        if behind:
            if None in behind:
                return True
            clock = min(t for t in behind if t is not None)
        elif wall_ms is not None:
            live = wall_ms - self.max_delay_ms
            clock = live if clock is None else max(clock, live)
            if self._min_accepted is None and self._first_time is None:
                self._min_accepted = live
        if clock is None:
            return True
        return self._run_until(clock - self.lateness_ms, inclusive=False)

    def finish(self, max_work: int | None = None, max_changes: int | None = None) -> bool:
        """End of input: apply everything buffered and run timers up to the last event time (or `until`).
        With `max_work`/`max_changes`, like `advance`: False when stopped early; call again to continue."""
        if not self._bounded(max_work, max_changes):
            return False
        self._release_held()
        end = self._newest
        if self.until_ms is not None:
            end = self.until_ms if end is None else max(end, self.until_ms)
        if end is None:
            return True
        return self._run_until(end, inclusive=True)

    def _release_held(self) -> None:
        """End of input: nothing follows a held line to contradict it, so it keeps its own time."""
        for lane, (at, line, matched, kept) in self._held.items():
            self._lanes[lane] = max(self._lanes.get(lane, at), at)
            self._newest = at if self._newest is None else max(self._newest, at)
            if matched:
                self._seq += 1
                event: _Pending = (at, self._seq, line, kept, matched)
                self._buffer.append(event)
                self._pending_new.append(event)
        self._held.clear()

    @property
    def between_instants(self) -> bool:
        """No instant is left half done by a work budget: input taken in now waits for nothing."""
        return self._partial is None

    def changes_pending(self) -> int:
        """Series changed or ended since the last checkpoint (a checkpoint's size)."""
        return len(self._dirty) + len(self._deleted)

    @property
    def horizon_ms(self) -> int:
        """Every instant before this has been processed: transitions up to it are final."""
        return self._done_before

    def drain(self) -> list[Transition]:
        """Transitions decided since the last call, in event-time order."""
        out, self._out = self._out, []
        return out

    # ---- time ----------------------------------------------------------------------------------------------

    def _bounded(self, max_work: int | None, max_changes: int | None) -> bool:
        """Start a bounded run: finish an instant a budget cut earlier first. False when it is still cut."""
        self._budget = math.inf if max_work is None else max_work
        self._max_changes = _FOREVER if max_changes is None else max_changes
        return self._partial is None or self._continue_instant()

    def _complete(self) -> None:
        """Finish a cut instant before anything else touches the engine (input, checkpoint)."""
        finish(self.instant_steps(None))

    def instant_steps(self, part: int | None) -> Steps[None]:
        """Finish an instant a work budget cut (see `advance`), `part` units of work a step (None: in one go):
        a wave of thousands of series at one millisecond is finished with the loop served in between. A
        caller that checkpoints runs it before it drains: the transitions the instant decides go with the
        checkpoint that stores the state they come from."""
        while self._partial is not None:
            self._budget = math.inf if part is None else part
            if not self._continue_instant():
                yield

    def _run_until(self, limit: int, inclusive: bool) -> bool:
        """Process instants before `limit` (and at it, when inclusive) within the budget `_bounded` set."""
        if (
            self._first_time is None
            and self._min_accepted is not None
            and (self._min_accepted < limit or (inclusive and self._min_accepted <= limit))
        ):
            self._start(self._min_accepted)
        end = limit + 1 if inclusive else limit  # every instant before `end` is to be processed
        buffer, timers = self._buffer, self._timers
        # The events before `end` are read in place, from the sorted buffer's front; a run that stops removes
        # what it processed only. Taking them off and putting the rest back cost every bounded slice a copy
        # of every ready event (a flood's backlog: 100,000s), whatever the slice's budget.
        ready, count = buffer, self._sort_buffer(end)
        if self._bulk_runs and self._any_bulk and count > 1 and self.sampler is None:
            if self._budget == math.inf and self._max_changes == _FOREVER:
                ready = self._apply_runs(buffer[:count])  # what is left takes the per-instant path below
                del buffer[:count]
                count = len(ready)
            elif self._partial is None:
                count = self._bounded_runs(count, end)
        pos, begun = 0, False
        slots = self._slots
        bounded = self._max_changes != _FOREVER  # else the change bound is never tested (replay, finish)
        while True:
            instant = ready[pos][0] if pos < count else _FOREVER
            if timers and timers[0][0] < instant:
                instant = timers[0][0]
            if slots and (slots[0] << _SLOT_BITS) <= instant and (slots[0] << _SLOT_BITS) < end:
                if self._reach(slots[0]):  # its timers join the heap before any instant in it runs
                    continue
                return self._stopped(ready, pos, slots[0] << _SLOT_BITS)  # nothing in the slot is done
            if instant >= end:
                break
            if timers and timers[0][0] == instant and (pos == count or ready[pos][0] != instant):
                _, i, key = timers[0]
                series = self._series[i].get(key)
                if series is None or series.due != instant:  # a stale timer alone at its instant: skipped
                    heapq.heappop(timers)
                    continue
            # The change bound stops only after some progress: a caller that never checkpoints still moves.
            if self._budget <= 0 or (bounded and begun and self.changes_pending() >= self._max_changes):
                return self._stopped(ready, pos, instant)
            stop = pos
            while stop < count and ready[stop][0] == instant:
                stop += 1
            if stop == pos + 1 and len(ready[pos][4]) == 1 and not (timers and timers[0][0] == instant):
                # The common instant (one event of one rule, no timer due): applied and evaluated without the
                # bookkeeping of an instant that can be cut. Most events of a busy stream are alone in their
                # millisecond.
                self._alone(ready[pos], instant)
                self._budget -= 2
                pos = stop
                begun = True
                continue
            self._partial = _Instant(instant, ready[pos:stop])
            pos = stop
            begun = True
            if not self._continue_instant():
                self._processed(ready, pos)
                self._done_before = max(self._done_before, instant)  # `instant` itself is not done yet
                return False
        self._processed(ready, pos)
        self._done_before = max(self._done_before, end)
        self._after_run()
        return True

    def _bounded_runs(self, count: int, end: int) -> int:
        """A bounded run's first part through the bulk path: the instants before a cut (_bulk_cut) processed
        unbounded, each of their events and timers charged one unit of the budget; returns how many events
        before `end` are left."""
        found = self._bulk_cut(count, end)
        if found is None:
            return count
        cut, work = found
        budget, changes = self._budget, self._max_changes
        self._budget, self._max_changes = math.inf, _FOREVER
        try:
            self._run_until(cut, inclusive=False)
        finally:
            self._budget, self._max_changes = budget - work, changes
        return self._sort_buffer(end)

    def _bulk_cut(self, count: int, end: int) -> tuple[int, int] | None:
        """A bounded run's chance of the bulk path (_apply_runs): an instant before which every instant may be
        processed unbounded within about the run's budget, and the events and timers before it; or None.
        Such a part cannot be cut (events of a run are applied before the instants around them: a checkpoint
        in between would store them twice), so it holds at most half the budget's units in events and the
        rest in timers due: at worst, with no run to take, about the work of a slice. The change bound
        holds before and after."""
        buffer, slots, budget = self._buffer, self._slots, int(self._budget)
        most = budget // 2
        if most < self._bulk_least:
            return None
        if count > most:
            cut = buffer[most][0]
            taken = bisect.bisect_left(buffer, (cut,), 0, most)
        else:
            cut, taken = end, count
        if taken < self._bulk_least:
            return None
        # The timers due before the cut: in the heap, and in the wheel's slots that begin before it (moved
        # into the heap on the way: counted whole, stale ones too).
        slotted = _heap_below(slots, (cut + (1 << _SLOT_BITS) - 1) >> _SLOT_BITS, budget - taken)
        if slotted is None:
            return None
        waiting = sum(len(keys) for at in slotted for keys in self._wheel[slots[at]].values())
        if waiting > budget - taken:
            return None  # a slot of a flood's timers: moved into the heap in parts, the per-instant way
        due = _heap_below(self._timers, (cut,), budget - taken - waiting)
        if due is None:
            return None
        waiting += len(due)
        if self._max_changes != _FOREVER:
            changes = self.changes_pending() + waiting + sum(map(len, map(_RULES_OF, islice(buffer, taken))))
            if changes > self._max_changes:
                return None
        return cut, taken + waiting

    def _stopped(self, ready: list[_Pending], pos: int, next_instant: int) -> bool:
        """A bounded run stops before `next_instant`, `ready[:pos]` processed (False: not done)."""
        self._processed(ready, pos)
        self._done_before = max(self._done_before, next_instant)
        self._after_run()
        return False

    def _processed(self, ready: list[_Pending], pos: int) -> None:
        """A run ends with `ready[:pos]` processed: read in place, they leave the buffer's front; a list of
        its own (the bulk path's rest) is empty by then (that path runs unbounded)."""
        buffer = self._buffer
        if ready is buffer:
            del buffer[:pos]
        else:
            assert pos == len(ready)
        self._sorted_len = len(buffer)

    def _sort_buffer(self, end: int) -> int:
        """Sort the buffered events; how many are before `end` (at its front)."""
        buffer, done = self._buffer, self._sorted_len
        if len(buffer) != done:  # events were appended since: sort them, and merge only where they overlap
            tail = buffer[done:]
            tail.sort()
            if done and tail[0] < buffer[done - 1]:
                # Late or reordered events: the sorted events after the first of them merge with the new ones
                # (two runs: Timsort merges them in linear time). Sorting the whole buffer instead scanned
                # every waiting event on every batch: with lateness 2 s under a flood, 200,000 of them.
                start = bisect.bisect_right(buffer, tail[0], 0, done)
                tail[:0] = buffer[start:done]
                tail.sort()
                buffer[start:] = tail
            else:
                buffer[done:] = tail
            self._sorted_len = len(buffer)
        return bisect.bisect_left(buffer, (end,))  # (end,) sorts before every event at `end`

    def _alone(self, event: _Pending, instant: int) -> None:
        """An instant of one event of one rule and no timer: applied and evaluated."""
        _, _, line, kept, matched = event
        if type(kept) is tuple and len(kept) == 3 and kept[0] is _SAMPLED:  # its key and sample (_is_sampled)
            ref = self._observe(matched[0], None, line, instant, kept[1], kept[2])
        elif kept is not None and type(kept) is not dict:  # its group key (see _Pending; _is_key, inlined)
            ref = self._observe(matched[0], None, line, instant, cast(GroupKey, kept))
        else:
            record = self._rules.fields(line) if kept is None else kept
            ref = self._observe(matched[0], record, line, instant)
        if ref is not None:
            self._evaluate(ref[0], ref[1], instant)

    def _apply_runs(self, ready: list[_Pending]) -> list[_Pending]:
        """Apply, series by series, the runs of events that provably decide nothing; return the other events
        (in order) for the per-instant path. Unbounded runs only: nothing cuts them in between.

        A run is the first events in `ready` of one series of a `count >= n` rule (`_Prepared.bulk`) that is
        inactive, has no folded events and holds fewer than n times after each instant of the run. Per
        instant, such an instant decides nothing for the series (see `_observe`): its events are appended,
        the series is marked changed, a timer is armed by the first event when it had none, and the record
        is kept; a timer of the series due before the run's next instant evaluates it to nothing but an
        eviction, then ends it (empty) or arms the next one. `_apply_run` does that, whole instants at a
        time, with the series' own timers in between. The run's later events, and events of other series,
        go the per-instant way with the other timers: they touch other series, or the same one after the
        run, so doing the run first changes nothing (a timer entry of the series made stale here is skipped
        there). Only the caps on live series couple series: when this batch could reach them, everything
        takes the per-instant path. tests/unit/test_bulk_runs.py compares the two paths."""
        if self._live + sum(map(len, map(_RULES_OF, ready))) > min(self.max_series, self.max_series_per_rule):
            return ready  # some series could be refused: creation order would matter
        fields_of, preps = self._rules.fields, self._prep
        keys_of = [prep.key_of if prep.bulk or prep.quantile_runs else None for prep in preps]
        groups: list[dict[GroupKey, list[_Pending]]] = [{} for _ in preps]  # per rule: group -> its events
        whole: list[_Pending] = []  # events of no bulk rule: per instant as they are (not decoded here)
        slow: list[tuple[_Pending, int]] = []  # (event, rule) of the others, for the per-instant path
        for event in ready:
            _, _, line, kept, matched = event
            if keys_of[matched[0]] is None and (len(matched) == 1 or not any(keys_of[i] for i in matched)):
                whole.append(event)
                continue
            if len(matched) == 1 and kept is not None and type(kept) is not dict:  # its key, kept by the intake
                i = matched[0]
                key = kept[1] if type(kept) is tuple and len(kept) == 3 and kept[0] is _SAMPLED else kept  # _is_sampled
                run = groups[i].get(key)  # type: ignore[arg-type]
                if run is None:
                    groups[i][key] = [event]  # type: ignore[index]
                else:
                    run.append(event)
                continue
            keys, record = (
                (cast(tuple[GroupKey, ...], kept), None)
                if _is_key(kept)
                else ((), fields_of(line) if kept is None else cast(Fields, kept))
            )
            for j, i in enumerate(matched):
                key_of = keys_of[i]
                if key_of is None:
                    slow.append((event, i))
                    continue
                key = keys[j] if record is None else key_of(record)
                item = event
                if preps[i].quantile_runs and kept is None:
                    item = (event[0], event[1], line, record, matched)  # its sample is read from the record
                run = groups[i].get(key)
                if run is None:
                    groups[i][key] = [item]
                else:
                    run.append(item)
        for i, runs in enumerate(groups):
            apply = self._apply_quantile_run if preps[i].quantile_runs else self._apply_run
            for key, run in runs.items():
                taken = apply(i, key, run)
                if taken < len(run):
                    slow += [(event, i) for event in run[taken:]]
        if not slow:
            return whole
        slow += [(event, -1) for event in whole]  # -1: the whole event
        return _regrouped(slow)

    def _apply_run(self, i: int, key: GroupKey, run: list[_Pending]) -> int:
        """Apply the leading events of `run` (one series' events, in time order) that decide nothing, as
        `_apply_runs` describes; return how many."""
        prep, table = self._prep[i], self._series[i]
        series = table.get(key)
        if series is not None and not (
            type(series) is CountSeries and series.phase is INACTIVE and series.older is None
        ):
            return 0
        limit = prep.min_count - 1  # the most times the series may hold after an instant that decides nothing
        times = list(map(_TIME_OF, run))
        if series is not None and series.extend_below(times, limit):
            k = len(times)  # the common run: all of it before its timer, with room for all of it
        else:
            k = self._apply_instants(i, key, series, times, 0 if series is None else series.size())
            series = table.get(key)
        if k and series is not None:  # (None: its timer ended it after the run: deleted, not changed)
            self._dirty.add((i, key))
            if prep.rule.keeps_record:
                # The last event observed: the greatest line of the last instant taken (see _continue_instant).
                first = bisect.bisect_left(times, times[k - 1], 0, k)
                series.record = max(event[2] for event in run[first:k]).decode()
        return k

    def _apply_quantile_run(self, i: int, key: GroupKey, run: list[_Pending]) -> int:
        """`_apply_run` for a quantile rule's inactive series: its instants over the run, with its timers in
        between, up to the first one whose evaluation could change something (QuantileSeries.run); return
        how many events were taken. `run` is put in the order the per-instant path observes (by line within a
        millisecond); events without a sample are dropped from it (the per-instant path ignores them)."""
        prep, table = self._prep[i], self._series[i]
        series = table.get(key)
        if series is not None and (type(series) is not QuantileSeries or series.phase is not INACTIVE):
            return 0
        kind, rule = prep.kind, prep.rule
        assert kind is not None
        assert rule.condition is not None
        times = list(map(_TIME_OF, run))
        if any(map(operator.eq, times, islice(times, 1, None))):
            run.sort(key=_TIME_LINE)  # `run` is in time order (from the sorted buffer): only ties move
        fields_of = self._rules.fields  # a quantile rule's events keep their sample, fields or nothing (_Kept)
        samples: list[Any] = [
            kept[2]
            if type(kept) is tuple  # (_SAMPLED, key, sample): a quantile rule's events keep no bare keys
            else kind.sample(fields_of(line) if kept is None else cast(Fields, kept), line)
            for _, _, line, kept, _ in run
        ]
        if None in samples:
            run[:] = [event for event, sample in zip(run, samples, strict=True) if sample is not None]
            samples = [sample for sample in samples if sample is not None]
            times = list(map(_TIME_OF, run))
        fresh = series is None
        if series is None:
            series = kind.new()
            assert type(series) is QuantileSeries
        taken, due, changed = series.run(times, samples, rule.window_ms, rule.condition, series.due)
        if fresh:
            if not taken:
                return 0  # made by the per-instant path instead, at its first event
            table[key] = series
            self._grew()
        if changed:
            self._dirty.add((i, key))
        if due != series.due:
            series.due = due
            if due is not None:
                heapq.heappush(self._timers, (due, i, key))
                if len(self._timers) > 2 * self._live + _COMPACT_FROM:
                    self._drop_stale_timers()
        if taken and rule.keeps_record:
            series.record = run[taken - 1][2].decode()  # the greatest line of the last instant taken
        return taken

    def _apply_instants(self, i: int, key: GroupKey, series: AnySeries | None, times: list[int], size: int) -> int:
        """`_apply_run` when the run meets the series' timers or its room: instant by instant (a block of
        instants at a time), with the timers in between; return how many times were taken."""
        prep, table = self._prep[i], self._series[i]
        limit, capacity, window = prep.min_count - 1, prep.capacity, prep.rule.window_ms
        count, k = len(times), 0
        while k < count and size <= limit:  # else its next evaluation may decide something
            t = times[k]
            due = None if series is None else series.due
            if due is not None and due < t:  # its timer, before this instant: as in _evaluate
                assert type(series) is CountSeries
                series.due = None
                series.evict(due, capacity, window)
                self._dirty.add((i, key))
                if series.empty():
                    del table[key]
                    self._live -= 1
                    self._dirty.discard((i, key))
                    self._deleted.add((i, key))
                    series, size = None, 0
                else:
                    self._reschedule(i, key, series)
                    size = series.size()
                continue
            # The instants up to its timer (events at the timer's instant come before it; without one, the
            # first instant arms one at t + window) while it holds at most `limit` times.
            j = min(count, k + limit - size, bisect.bisect_right(times, t + window if due is None else due, k))
            if k < j < count and times[j] == times[j - 1]:
                j = bisect.bisect_left(times, times[j], k, j)  # whole instants only
            if j <= k:
                break  # the instant would evaluate the series
            if series is None:
                series = table[key] = CountSeries()
                self._grew()
            assert type(series) is CountSeries
            if series.due is None:
                series.extend(times[k : k + 1])
                self._reschedule(i, key, series)  # armed by the first event, as in _observe
                series.extend(times[k + 1 : j])
            else:
                series.extend(times[k:j])
            size += j - k
            k = j
        return k

    def _continue_instant(self) -> bool:
        """Carry the current instant on within the budget; True when it is finished. A unit of work is one
        event observed by one rule, or one series evaluated."""
        work = self._partial
        assert work is not None
        now, touched = work.now, work.touched
        if work.refs is None:
            events = work.events
            if work.observed < len(events):
                if work.observed == 0 and len(events) > 1:
                    events.sort(key=lambda p: p[2])  # same-ms events in a stable order, whatever their arrival
                observe = self._observe
                while work.observed < len(events):
                    if self._budget <= 0:
                        return False
                    _, _, line, kept, matched = events[work.observed]
                    work.observed += 1
                    self._budget -= len(matched)
                    if _is_sampled(kept):
                        ref = observe(matched[0], None, line, now, kept[1], kept[2])  # type: ignore[index]
                        if ref is not None:
                            touched[ref] = None
                        continue
                    if _is_key(kept):  # the group keys, kept by the intake (see _Pending)
                        keys = (cast(GroupKey, kept),) if len(matched) == 1 else cast(tuple[GroupKey, ...], kept)
                        for i, key in zip(matched, keys, strict=True):
                            ref = observe(i, None, line, now, key)
                            if ref is not None:
                                touched[ref] = None
                        continue
                    record = self._rules.fields(line) if kept is None else cast(Fields, kept)
                    for i in matched:
                        ref = observe(i, record, line, now)
                        if ref is not None:
                            touched[ref] = None
            timers, tables = self._timers, self._series
            while timers and timers[0][0] == now:
                _, i, key = heapq.heappop(timers)
                series = tables[i].get(key)
                if series is not None and series.due == now:
                    series.due = None
                    touched[(i, key)] = None
            work.refs = sorted(touched) if len(touched) > 1 else list(touched)
            self._budget -= 1
        refs, evaluate = work.refs, self._evaluate
        while work.evaluated < len(refs):
            if self._budget <= 0:
                return False
            left = len(refs) - work.evaluated
            stop = work.evaluated + (left if self._budget >= left else int(self._budget))
            for i, key in refs[work.evaluated : stop]:
                evaluate(i, key, now)
            self._budget -= stop - work.evaluated
            work.evaluated = stop
        self._partial = None
        self._done_before = max(self._done_before, now + 1)
        return True

    def _after_run(self) -> None:
        """Rebuild the tables once three quarters of the series since the last rebuild have ended, if they were
        many; and, after such a rebuild, up to _TAIL more times as the rest end. Each rebuild lets the live loop
        give memory back, and what was still held at one (the reorder buffer, a commit's deletes, request
        bodies) is freed by the time more series have ended. Without the tail, a flood's last rebuild came at
        whatever size its steps of ending left (below 4,096 series, no later one), and the memory held then
        stayed: 125 and 145 MB in 2 of 19 runs of the fault row groupby-1m (session 12; none of 6 since)."""
        if self._live * 4 < self._peak and (self._peak >= _COMPACT_FROM or self._tail > 0):
            self._compact()

    def _compact(self) -> None:
        """Give back the memory of ended series: rebuild the series tables and the timer bookkeeping at their
        current size, dropping timer entries of series that were rescheduled or ended."""
        self._series = [dict(table) for table in self._series]
        self._drop_stale_timers()
        self._tail = _TAIL if self._peak >= _COMPACT_FROM else self._tail - 1
        self._peak = self._live
        self.compactions += 1  # the live loop gives the freed memory back (telemetry/memory.py)

    def _drop_stale_timers(self) -> None:
        tables, timers = self._series, self._timers
        # In place: callers hold the lists.
        timers[:] = [(d, i, k) for d, i, k in timers if getattr(tables[i].get(k), "due", None) == d]
        heapq.heapify(timers)
        wheel: dict[int, dict[int, list[GroupKey]]] = {}
        self._wheeled = 0
        for slot, groups in self._wheel.items():
            for i, keys in groups.items():
                table = tables[i]
                kept = [k for k in dict.fromkeys(keys) if _slot_of(getattr(table.get(k), "due", None)) == slot]
                if kept:
                    wheel.setdefault(slot, {})[i] = kept
                    self._wheeled += len(kept)
        self._wheel = wheel
        self._slots[:] = sorted(wheel)

    def _reach(self, slot: int) -> bool:
        """The engine reaches `slot` (the first of the wheel): its current timers move into the heap, within
        the budget (_REACH_KEYS timers cost one unit: a flood's slot can hold hundreds of thousands). True when
        the whole slot is in; False when the budget ran out first (no instant in the slot may run before the
        rest is moved: the next call carries on)."""
        tables, timers = self._series, self._timers
        groups = self._wheel[slot]
        for i in list(groups):
            keys, table = groups[i], tables[i]
            while keys:
                if self._budget <= 0:
                    return False
                take = keys[-_REACH_PART:]  # the heap's order does not depend on the order of pushes
                del keys[-_REACH_PART:]
                self._wheeled -= len(take)
                self._budget -= -(-len(take) // _REACH_KEYS)  # whole units: a fraction left would stall a slice
                for key in take:
                    series = table.get(key)
                    due = None if series is None else series.due
                    if due is not None and due >> _SLOT_BITS == slot:
                        heapq.heappush(timers, (due, i, key))
            del groups[i]
        del self._wheel[slot]
        heapq.heappop(self._slots)
        self._reached = max(self._reached, slot + 1)
        return True

    def _start(self, first_time: int) -> None:
        """The first event time is known: absence rules start expecting their declared groups from it."""
        self._first_time = first_time
        for i, prep in enumerate(self._prep):
            for key in prep.expect:
                if key not in self._series[i]:
                    self._series[i][key] = AbsenceSeries(first_time)
                    self._grew()
                    self._dirty.add((i, key))
                    self._schedule(i, key)

    def _schedule(self, i: int, key: GroupKey) -> None:
        series = self._series[i].get(key)
        if series is not None:
            self._reschedule(i, key, series)

    def _reschedule(self, i: int, key: GroupKey, series: AnySeries) -> None:
        due = self._next_due(i, series)
        if self._flaps:  # ---- hook: alerts/flap.py (the flapping state ends, old changes leave the period)
            flap = self._flaps.get((i, key))
            flapping = self.rules[i].flapping
            if flap is not None and flap.changes and flapping is not None:
                ends = flap.changes[-1] + flapping[1]
                due = ends if due is None else min(due, ends)
        # A pending earlier timer is kept: evaluating a series at an instant where nothing changed for it
        # decides nothing (the condition, value and phase stay as they are), and it reschedules from there.
        # So an event that only moves the due later costs no timer.
        current = series.due
        if due is not None and (current is None or due < current):
            series.due = due
            slot = due >> _SLOT_BITS
            if slot < self._reached:
                heapq.heappush(self._timers, (due, i, key))
            else:
                groups = self._wheel.get(slot)
                if groups is None:
                    groups = self._wheel[slot] = {}
                    heapq.heappush(self._slots, slot)
                keys = groups.get(i)
                if keys is None:
                    groups[i] = [key]
                else:
                    keys.append(key)
                self._wheeled += 1
            if len(self._timers) + self._wheeled > 2 * self._live + _COMPACT_FROM:
                # Entries of rescheduled or ended series wait in the heap until their time comes: with long
                # windows that can be long, so drop them once they outnumber the live ones.
                self._drop_stale_timers()

    def _next_due(self, i: int, series: AnySeries) -> int | None:
        rule = self.rules[i]
        if isinstance(series, AbsenceSeries):
            return None if series.firing else series.last_seen + rule.absent_ms
        if self._prep[i].grows_only and series.phase.active_since is None and type(series) is CountSeries:
            # `count > n` cannot start to hold when events leave the window: an inactive series needs no
            # timer until its window empties (when it ends).
            last = series.last()
            return None if last is None else last + rule.window_ms
        expiry = series.next_expiry(rule.window_ms)
        pending = series.phase.due(rule.for_ms, rule.keep_ms)
        if expiry is None:
            return pending
        return expiry if pending is None else min(expiry, pending)

    # ---- series --------------------------------------------------------------------------------------------

    def _observe(
        self, i: int, fields: Fields | None, line: bytes, now: int, key: GroupKey | None = None, sample: Any = _UNSET
    ) -> SeriesRef | None:
        """Apply one event to rule i's series. `fields` may be None when the intake kept the group `key` and
        the rule reads nothing else (count and absence rules: Engine._key_only), or the key and the `sample`
        (every other rule, see _Kept)."""
        prep = self._prep[i]
        rule = prep.rule
        if key is None:
            assert fields is not None
            key = prep.key_of(fields)
        table = self._series[i]
        series = table.get(key)
        if sample is _UNSET:
            sample = None
            if prep.kind is not None or prep.field is not None:
                assert fields is not None
                sample = self._sample_of[i](fields, line)
                if sample is None:
                    return None  # matched, but carries nothing the kind can use, or no number to aggregate
        elif sample is None:
            return None
        if series is None:
            if (len(table) >= self.max_series_per_rule or self._live >= self.max_series) and key not in prep.expect:
                dropped = self.stats.series_dropped
                dropped[rule.name] = dropped.get(rule.name, 0) + 1
                return None
            series = table[key] = _new_series(rule, prep, now)
            self._grew()
        if type(series) is AbsenceSeries:
            series.observe(now)
        elif type(series) is CountSeries:
            series.observe(now, prep.capacity, rule.window_ms)
            if series.size() < prep.min_count and series.phase is INACTIVE and series.older is None:
                # `count >= n` cannot hold with fewer than n events in the window, whatever leaves it: this
                # instant decides nothing for the series. It is stored, and needs a timer only to end.
                ref = (i, key)
                self._dirty.add(ref)
                if series.due is None:
                    self._reschedule(i, key, series)
                if rule.keeps_record:
                    series.record = line.decode()
                if self.sampler is not None:
                    count = len(series.times) - bisect.bisect_right(series.times, now - rule.window_ms)  # unevicted
                    self.sampler(i, _labels(key), now, count / prep.window_s if prep.rate else count, INACTIVE)
                return None
        elif type(series) is AggregateSeries:
            assert sample is not None
            series.observe(now, int(sample) if sample.is_integer() and abs(sample) < 2**53 else sample)
        else:  # ---- hook: rules/kinds.py
            assert isinstance(series, KIND_TYPES)
            series.observe(now, sample)
        if rule.keeps_record:
            series.record = line.decode()  # the raw line: stored and checkpointed as is, decoded to render
        return (i, key)

    def _grew(self) -> None:
        self._live += 1
        self._peak = max(self._peak, self._live)

    def _evaluate_absence(self, i: int, key: GroupKey, now: int, series: AbsenceSeries) -> None:
        if series.firing and series.last_seen == now:
            series.firing = False
            self._emit(i, key, now, AlertState.RESOLVED, series.silence_ms / 1000, series.record)
        elif not series.firing and now >= series.last_seen + self.rules[i].absent_ms:
            series.firing = True
            self._emit(i, key, now, AlertState.FIRING, (now - series.last_seen) / 1000, series.record)
        if self.sampler is not None:
            self.sampler(i, _labels(key), now, (now - series.last_seen) / 1000, Phase(None, series.firing))
        self._reschedule(i, key, series)

    def _evaluate(self, i: int, key: GroupKey, now: int) -> None:  # noqa: PLR0915 (one flat dispatch per kind)
        table = self._series[i]
        series = table.get(key)
        if series is None:
            return
        prep = self._prep[i]
        rule = prep.rule
        self._dirty.add((i, key))
        if type(series) is AbsenceSeries:
            self._evaluate_absence(i, key, now, series)
            return
        value: float | int
        if type(series) is CountSeries:
            series.evict(now, prep.capacity, rule.window_ms)
            count = series.count(now, rule.window_ms)
            assert prep.count_test is not None
            holds = bool(count) and prep.count_test(count)
            value = count / prep.window_s if prep.rate else count
        elif type(series) is AggregateSeries:
            assert rule.condition is not None
            series.evict(now, rule.window_ms)
            value = series.value(rule.condition.aggregate)
            holds = not series.empty() and rule.condition.holds(value)
        elif type(series) is QuantileSeries:  # the quantile itself only where it is shown (below)
            assert rule.condition is not None
            series.evict(now, rule.window_ms)
            holds = series.holds(rule.condition)
            value = math.nan
        else:  # ---- hook: rules/kinds.py
            assert isinstance(series, KIND_TYPES)
            assert rule.condition is not None
            series.evict(now, rule.window_ms)
            value, holds = series.measure(rule.condition)
        phase = series.phase
        change = Change.NONE
        if holds or phase.active_since is not None or phase.firing:  # else: inactive stays inactive
            series.phase, change = step(phase, holds, now, rule.for_ms, rule.keep_ms)
        if type(series) is QuantileSeries and (
            change is not Change.NONE or rule.flapping is not None or self.sampler is not None
        ):
            assert rule.condition is not None
            value = series.measure(rule.condition)[0]
        if rule.flapping is not None:  # ---- hook: alerts/flap.py
            change = self._flap(i, key, now, change, series.phase.firing, value, series.record)
        if change is Change.FIRING or change is Change.RESOLVED:
            state = AlertState.FIRING if change is Change.FIRING else AlertState.RESOLVED
            accuracy = series.accuracy() if isinstance(series, (QuantileSeries, DistinctSeries)) else None
            self._emit(i, key, now, state, value, series.record, () if accuracy is None else (("accuracy", accuracy),))
        if self.sampler is not None:
            self.sampler(i, _labels(key), now, value, series.phase)
        if series.empty() and series.phase.active_since is None and (i, key) not in self._flaps:
            del table[key]  # an idle series ends; its state is forgotten (its timers go stale)
            self._live -= 1
            self._dirty.discard((i, key))
            self._deleted.add((i, key))
            return
        self._reschedule(i, key, series)

    def _flap(
        self, i: int, key: GroupKey, now: int, change: Change, firing: bool, value: float | int, record: str | None
    ) -> Change:
        """Flap damping: the change to send as usual (NONE: nothing); the `flapping` one is sent here."""
        limit, within = self.rules[i].flapping or (0, 0)
        ref = (i, key)
        flap = self._flaps.get(ref)
        if flap is None:
            if change is not Change.FIRING and change is not Change.RESOLVED:
                return change
            flap = self._flaps[ref] = Flap()
        emit = flap_step(flap, change, now, firing, limit, within)
        if flap.since is None and (not flap.changes or flap.changes[-1] + within <= now):
            del self._flaps[ref]  # no change left in the period: nothing to remember
        if emit is FlapEmit.FLAPPING:
            note = f"{limit + 1} changes in {format_duration(within)}"
            self._emit(i, key, now, AlertState.FIRING, value, record, (("flapping", note),))
            return Change.NONE
        if emit is FlapEmit.RESOLVED:
            return Change.RESOLVED
        return change if emit is FlapEmit.AS_DECIDED else Change.NONE

    def _emit(
        self,
        i: int,
        key: GroupKey,
        now: int,
        state: AlertState,
        value: float | int,
        record: str | None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        rule = self.rules[i]
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)  # 300.0 seconds prints as 300, identically on every backend
        labels = dict(rule.labels)
        labels.update(zip(rule.group_by, _labels(key), strict=True))
        label_pairs = tuple(sorted(labels.items()))
        ctx = (decode_line(record.encode()) or {}) if record is not None else {}
        annotations = tuple((name, t.render(value, rule.name, labels, ctx)) for name, t in rule.annotations) + extra
        self._out.append(Transition(now, rule.name, state, label_pairs, value, annotations))
        self.stats.transitions += 1

    # ---- persistence ---------------------------------------------------------------------------------------

    def checkpoint(self) -> Changes:
        """Everything that changed since the last checkpoint, for one atomic store commit."""
        return finish(self.checkpoint_steps(None))

    def checkpoint_steps(self, part: int | None) -> Steps[Changes]:
        """`checkpoint()` in steps: yields after every `part` series dumped (None: in one go) and returns the
        changes, so a live loop can serve others between steps (a wave of many series changed at one instant
        is dumped in slices). Nothing may change the engine between the steps: the changes are as of the
        first one."""
        self._complete()  # a checkpoint holds whole instants only: the pending log is cut at an instant
        dirty, self._dirty = self._dirty, set()
        deleted, self._deleted = self._deleted, set()
        pending_new, self._pending_new = self._pending_new, []
        done = self._done_before
        changes = Changes(
            meta=self._meta(),
            upserts={},
            deletes={},
            # Only the events still waiting: one taken in and applied since the last checkpoint would be added
            # and removed in the same commit (a third of a replay bench batch's: 45 s of events, 30 s lateness).
            pending_add=[
                (event[0], event[1].to_bytes(8, "big") + event[2]) for event in pending_new if event[0] >= done
            ],
            pending_before=done,
        )
        held = self._held_form()
        if held != self._held_stored:  # replay's held lines are state too: a restart must find them
            changes.held = self._held_stored = held
        deletes = changes.deletes
        for i, key in deleted:
            if key not in self._series[i]:
                key_bytes = _key_bytes(key)
                gone = deletes.setdefault(self._prep[i].rule_id, [])
                gone.append(key_bytes)
                gone += [_part_key(key_bytes, n) for n in self._parts.pop((i, key), ())]
        for rule_id, orphans in self._orphans.items():  # parts no stored series named (see restore)
            deletes.setdefault(rule_id, []).extend(orphans)
        self._orphans = {}
        upserts = changes.upserts
        tables, preps, dump = self._series, self._prep, self._dump
        per_rule: list[dict[bytes, bytes] | None] = [None] * len(preps)  # upserts of rule i, once it has some
        size = len(dirty) if part is None else max(part, 1)
        left = size
        for i, key in dirty:  # a set: each changed series is dumped once per checkpoint
            if not left:
                yield
                left = size
            left -= 1
            series = tables[i].get(key)
            if series is not None:
                out = per_rule[i]
                if out is None:
                    out = per_rule[i] = upserts.setdefault(preps[i].rule_id, {})
                out[_key_bytes(key)] = _json(dump(i, series, key))
                if type(series) is QuantileSeries:
                    self._store_parts(i, key, series, out, deletes)
        return changes

    def _store_parts(
        self, i: int, key: GroupKey, series: QuantileSeries, out: dict[bytes, bytes], deletes: dict[str, list[bytes]]
    ) -> None:
        """A quantile series' final chunks, stored apart from it (its dump names them, see QuantileSeries.dump):
        each written once, when it becomes final, and deleted when it leaves the window; a commit then writes
        the newest chunk of a dense window (at most 1/64 of it), not the whole window (bench/README.md,
        "Quantile windows stored in parts"). The parts of the store are `_parts`; the series knows which of its own it
        wrote (a series made again under the same key writes all of its own)."""
        parts, stored = series.parts, self._parts.get((i, key), ())
        if not parts and not stored:
            return
        key_bytes = _key_bytes(key)
        written = series.written
        for n, text in parts.items():
            if n not in written:
                out[_part_key(key_bytes, n)] = text
        gone = [_part_key(key_bytes, n) for n in stored if n not in parts]
        if gone:
            deletes.setdefault(self._prep[i].rule_id, []).extend(gone)
        series.written = set(parts)
        if parts:
            self._parts[(i, key)] = set(parts)
        else:
            self._parts.pop((i, key), None)

    def _dump(self, i: int, series: AnySeries, series_key: GroupKey = ()) -> list[Any]:
        """The stored form of a series. A count series may wait on a timer earlier than the one its times
        give (an earlier timer is kept when events arrive, see _reschedule); that timer is stored too, so a
        restart evaluates the series at the same instants as an uninterrupted run and stores the same."""
        data = series.dump(apart=True) if type(series) is QuantileSeries else series.dump()
        if type(series) is CountSeries and not self._flaps:  # the common series: its stored timer, if earlier
            due = series.due
            if due is not None:
                prep = self._prep[i]
                if prep.grows_only and series.phase.active_since is None:  # as _next_due, without the call
                    last = series.last()
                    computed = None if last is None else last + prep.rule.window_ms
                else:
                    computed = self._next_due(i, series)
                if computed is None or due < computed:
                    if data and type(data[-1]) is dict:
                        data[-1]["d"] = due
                    else:
                        data.append({"d": due})
            return data
        flap = self._flaps.get((i, series_key)) if self._flaps else None
        if flap is not None:  # ---- hook: alerts/flap.py
            if data and type(data[-1]) is dict:
                data[-1]["fl"] = flap.dump()
            else:
                data.append({"fl": flap.dump()})
        if type(series) is CountSeries and series.due is not None:
            computed = self._next_due(i, series)
            if computed is None or series.due < computed:
                if data and type(data[-1]) is dict:
                    data[-1]["d"] = series.due
                else:
                    data.append({"d": series.due})
        return data

    def _held_form(self) -> dict[str, bytes]:
        return {lane: at.to_bytes(8, "big", signed=True) + line for lane, (at, line, _, _) in self._held.items()}

    def _meta(self) -> dict[str, int]:
        meta = {"done_before": self._done_before, "seq": self._seq}
        meta.update((_LANE + lane, newest) for lane, newest in self._lanes.items())
        for name, value in (
            ("newest", self._newest),
            ("min_accepted", self._min_accepted),
            ("first_time", self._first_time),
        ):
            if value is not None:
                meta[name] = value
        return meta

    @property
    def rule_ids(self) -> list[str]:
        return [p.rule_id for p in self._prep]

    def restore(self, snapshot: Snapshot) -> None:
        """Continue from a stored checkpoint: series, clock and the events still waiting in the buffer."""
        meta = snapshot.meta
        self._done_before = meta.get("done_before", _NEVER)
        self._seq = meta.get("seq", 0)
        self._newest = meta.get("newest")
        self._lanes = {key[len(_LANE) :]: value for key, value in meta.items() if key.startswith(_LANE)}
        if not self._lanes and self._newest is not None:
            self._lanes[""] = self._newest  # a checkpoint written before lanes existed
        # Lines held until the next line of their lane decides their time: stored whole, re-matched here.
        self._held = {}
        for lane, stored in snapshot.held.items():
            at, raw = int.from_bytes(stored[:8], "big", signed=True), stored[8:]
            hit: tuple[int, ...] = ()
            kept: _Kept = None
            try:
                record = self._rules.decode(raw)
                matched = self._rules.match(record)
                if matched:
                    hit, kept = self._kept(matched, record, raw)
            except DECODE_ERRORS:
                pass  # cannot happen for a line this engine held (it was refused before being held)
            self._held[lane] = (at, raw, hit, kept)
        self._held_stored = self._held_form()
        self._min_accepted = meta.get("min_accepted")
        self._first_time = meta.get("first_time")
        self._restore_series(snapshot)
        for time_ms, member in snapshot.pending:
            seq, raw = int.from_bytes(member[:8], "big"), member[8:]
            try:
                record = self._rules.decode(raw)
                matched = self._rules.match(record)
                if not matched:
                    continue
                hit, kept = self._kept(matched, record, raw)
            except DECODE_ERRORS:
                continue  # cannot happen for lines this engine buffered; a foreign entry is skipped
            self._buffer.append((time_ms, seq, raw, kept, hit))

    def _restore_series(self, snapshot: Snapshot) -> None:
        """restore()'s series, with their timers, flap state and the parts stored apart (_store_parts)."""
        self._parts, self._orphans = {}, {}
        for i, prep in enumerate(self._prep):
            table = snapshot.series.get(prep.rule_id, {})
            named: set[bytes] = set()  # the parts the stored series name
            for raw_key, raw_state in table.items():
                if raw_key[:1] == _PART:
                    continue  # a part of a quantile series (_store_parts), read with the series
                try:
                    key = _group_key(prep, tuple(orjson.loads(raw_key)))
                    stored = partial(_stored_part, table, raw_key, prep)
                    data, parts, sizes = with_parts(orjson.loads(raw_state), stored)
                    flap = None
                    if data and type(data[-1]) is dict and "fl" in data[-1]:  # ---- hook: alerts/flap.py
                        flap = Flap.load(data[-1].pop("fl"))
                    series = _load_series(prep, data)
                    if parts:
                        if type(series) is not QuantileSeries:
                            raise TypeError("parts stored apart for a series that is not a quantile window")
                        series.keep_parts(parts, sizes)
                except StoredStateError:
                    raise
                except _UNREADABLE as exc:  # not written by this engine's code: named, never a bare traceback
                    raise StoredStateError(
                        f"rule {prep.rule.name!r}: stored series {raw_key[:200]!r} cannot be read "
                        f"({type(exc).__name__}: {exc}): not state this version wrote, or damaged"
                    ) from exc
                if key not in self._series[i]:
                    self._grew()
                named.update(_part_key(raw_key, n) for n in parts)
                if flap is not None:
                    self._flaps[(i, key)] = flap
                self._series[i][key] = series
                if parts:
                    self._parts[(i, key)] = set(parts)
                if series.due is not None:  # a stored earlier timer (see _dump): armed as it was
                    heapq.heappush(self._timers, (series.due, i, key))
                self._schedule(i, key)
            orphans = [raw_key for raw_key in table if raw_key[:1] == _PART and raw_key not in named]
            if orphans:  # left by a commit this engine's code does not make; deleted at the next checkpoint
                self._orphans[prep.rule_id] = orphans

    def series_count(self) -> int:
        return self._live

    def series_per_rule(self) -> list[int]:
        """Live series of each rule, in rule order (the web UI's rules page)."""
        return [len(table) for table in self._series]

    def firing(self) -> list[tuple[Rule, Labels]]:
        """The series whose alert fires now, as (rule, group key) in rule order (a reload resolves those of
        rules it changes or removes)."""
        out: list[tuple[Rule, Labels]] = []
        for rule_index, (rule, table) in enumerate(zip(self.rules, self._series, strict=True)):
            for key in sorted(table):
                series = table[key]
                flap = self._flaps.get((rule_index, key))
                if series.firing if isinstance(series, AbsenceSeries) else series.phase.firing or (flap and flap.since):
                    out.append((rule, _labels(key)))
        return out


def _slot_of(due: int | None) -> int | None:
    return None if due is None else due >> _SLOT_BITS


def tune_collector() -> Callable[[], None]:
    """Set the collector's thresholds for a process that runs an engine (COLLECTOR_THRESHOLDS) and freeze
    what long full passes find alive (freeze_after_long_passes); return the function that puts back the
    thresholds it replaced and unfreezes, for a caller that restores them (the tests run `main` in-process)."""
    before = gc.get_threshold()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    stop_freezing = freeze_after_long_passes()

    def restore() -> None:
        stop_freezing()
        gc.set_threshold(*before)

    return restore


def _no_key(fields: Fields) -> GroupKey:
    return ()


def _key_function(group_by: Sequence[str]) -> Callable[[Fields], GroupKey]:
    """The group key of a record, as label values of the `group_by` fields. Built once per rule: the common
    single top-level field costs one dict lookup per matched event, not a generator and a path walk."""
    if not group_by:
        return _no_key
    if len(group_by) == 1 and "." not in group_by[0]:
        name = group_by[0]

        def single(fields: Fields) -> GroupKey:
            value = fields.get(name)  # absent and null both give "" (get_path finds the literal key first)
            return value if type(value) is str else label_value(value)

        return single
    if len(group_by) == 1:
        path = group_by[0]
        return lambda fields: label_value(_group_value(fields, path))
    paths = tuple(group_by)
    return lambda fields: tuple([label_value(_group_value(fields, f)) for f in paths])


def _key_only(prep: _Prepared) -> bool:
    """Whether rule `prep`'s series read nothing of an event but its group key (count and absence rules)."""
    return prep.kind is None and prep.field is None


def _record_reads(prep: _Prepared) -> tuple[str, ...] | None:
    """The top-level keys rule `prep`'s intake reads (its group_by, then its sample's field), or None when it
    reads more than record attributes can give: a dotted path (get_path tries the literal key, then the
    nesting), the raw line (`keeps_record` renders it: the line must have passed the full decoder), or a
    sample of more than one field's value (ratio, change, bytes)."""
    rule = prep.rule
    if rule.keeps_record or rule.extract:
        return None
    names = list(rule.group_by)
    if prep.kind is not None:
        if prep.kind.value_sampler() is None or prep.kind.field is None:
            return None
        names.append(prep.kind.field)
    elif prep.field is not None:
        names.append(prep.field)
    if any("." in name or name == LINE_FIELD for name in names):
        return None
    return tuple(names)


def _record_reader(prep: _Prepared, attrs: Mapping[str, str]) -> _Reader | None:
    """What the intake keeps of rule `prep`'s event (see _Kept) as a function of the matcher's record, whose
    attributes `attrs` names; the same as the key and sample functions give of the decoded fields (absent:
    UNSET there, missing here). None when the rule reads more (see _record_reads)."""
    names = _record_reads(prep)
    if names is None or not all(name in attrs for name in names):
        return None
    group_by = prep.rule.group_by
    unset = msgspec.UNSET
    key_of: Callable[[Any], GroupKey]
    if not group_by:
        key_of = _no_key
    elif len(group_by) == 1:
        get_key = operator.attrgetter(attrs[group_by[0]])

        def key_of(record: Any) -> GroupKey:
            value = get_key(record)
            return value if type(value) is str else label_value(None if value is unset else value)

    else:
        get_keys = operator.attrgetter(*(attrs[name] for name in group_by))
        key_of = lambda record: tuple([label_value(None if v is unset else v) for v in get_keys(record)])  # noqa: E731
    if _key_only(prep):
        return key_of
    of_value = prep.kind.value_sampler() if prep.kind is not None else as_number
    assert of_value is not None
    assert len(names) == len(group_by) + 1
    get_value = operator.attrgetter(attrs[names[-1]])
    missing: Any = MISSING
    if not group_by:  # one series: its key without a call

        def sampled_one(record: Any) -> _Kept:
            value = get_value(record)
            return (_SAMPLED, (), of_value(missing if value is unset else value))

        return sampled_one

    def sampled(record: Any) -> _Kept:
        value = get_value(record)
        return (_SAMPLED, key_of(record), of_value(missing if value is unset else value))

    return sampled


def _group_value(fields: Fields, path: str) -> Any:
    value = get_path(fields, path)
    return None if value is MISSING else value


def _labels(key: GroupKey) -> Labels:
    return (key,) if isinstance(key, str) else key


def _group_key(prep: _Prepared, labels: Labels) -> GroupKey:
    """The group key of a series of this rule with these label values (see GroupKey)."""
    return labels[0] if len(prep.rule.group_by) == 1 and len(labels) == 1 else labels


# A quantile series' final chunk stored apart (Engine._store_parts): its field is this byte, the series' key,
# this byte again and the chunk number. A series' key is JSON, which never holds a NUL byte.
_PART = b"\0"


def _part_key(key_bytes: bytes, n: int) -> bytes:
    return b"%s%s%s%d" % (_PART, key_bytes, _PART, n)


def _stored_part(table: Mapping[bytes, bytes], key_bytes: bytes, prep: _Prepared, n: int) -> bytes:
    """Chunk n of a stored quantile series, which its stored form names; a store without it is not one this
    engine committed to (parts are written in the same commit as the form that names them)."""
    text = table.get(_part_key(key_bytes, n))
    if text is None:
        raise StoredStateError(
            f"rule {prep.rule.name!r}: stored series {key_bytes!r} names chunk {n}, which is missing"
        )
    return text


def _key_bytes(key: GroupKey) -> bytes:
    return _json(_labels(key))  # a JSON array, as a list would give


def _json(value: Any) -> bytes:
    """JSON bytes that hold only their length: orjson (3.13) returns bytes holding about 4 KB each, and a
    checkpoint can hold one per series (600,000 series ending at once took 2.4 GB for their deleted keys)."""
    return bytes(memoryview(orjson.dumps(value)))


def _new_series(rule: Rule, prep: _Prepared, now: int) -> AnySeries:
    if rule.kind == "absence":
        return AbsenceSeries(now)
    if prep.kind is not None:
        return prep.kind.new()
    return CountSeries() if prep.field is None else AggregateSeries()


def _sample_function(prep: _Prepared) -> Callable[[Fields, bytes], Any]:
    """What rule `prep`'s series observe of a matched record and its line (None: nothing, the event is
    ignored); a rule that reads only the group key observes nothing else."""
    kind, name = prep.kind, prep.field
    if kind is not None:  # ---- hook: rules/kinds.py
        return kind.sampler()
    if name is not None:
        return lambda fields, line: as_number(get_path(fields, name))
    return _no_sample


def _no_sample(fields: Fields, line: bytes) -> Any:
    return None


def _load_series(prep: _Prepared, data: list[Any]) -> AnySeries:
    if prep.rule.kind == "absence":
        return AbsenceSeries.load(data)
    if prep.kind is not None:
        return prep.kind.load(data)
    if prep.field is None:
        return CountSeries.load(data)
    return AggregateSeries.load(data)


def _prepare(rule: Rule) -> _Prepared:
    prep = _Prepared(rule, f"{rule.name}:{rule.digest}", _key_function(rule.group_by))
    prep.expect = tuple(_group_key(prep, key) for key in rule.expect)
    condition = rule.condition
    if condition is not None:
        prep.window_s = rule.window_ms / 1000
        if condition.kind:
            prep.kind = kind_of(rule)
            prep.quantile_runs = condition.aggregate == "quantile" and rule.flapping is None
        elif condition.counts:
            prep.capacity = condition.exact_events(rule.window_ms)
            prep.count_test = _count_test(condition.op, condition.count_threshold(rule.window_ms))
            prep.grows_only = condition.op in (">", ">=")
            prep.rate = condition.aggregate == "rate"
            prep.min_count = next((c for c in range(1, prep.capacity + 1) if prep.count_test(c)), 0)
            prep.bulk = prep.grows_only and prep.min_count >= 2 and rule.flapping is None and rule.kind != "absence"
        else:
            prep.field = condition.field
    return prep


def _count_test(op: str, threshold: Any) -> Callable[[int], bool]:
    """`count OP threshold` on integers, exact for fractional thresholds (from rates)."""
    floor, ceil = math.floor(threshold), math.ceil(threshold)
    if op == ">=":
        return lambda c: c >= ceil
    if op == ">":
        return lambda c: c > floor
    if op == "<=":
        return lambda c: c <= floor
    if op == "<":
        return lambda c: c < ceil
    if threshold != floor:
        return lambda c: False
    return lambda c: c == floor


def _heap_below(heap: Sequence[Any], bound: Any, most: int) -> list[int] | None:
    """The places of a heap's entries below `bound`, or None when more than `most`. They are a subtree at its
    root: walked alone, not the whole heap."""
    if not heap or not heap[0] < bound:
        return []
    stack, found, size = [0], [], len(heap)
    while stack:
        at = stack.pop()
        found.append(at)
        if len(found) > most:
            return None
        for child in (2 * at + 1, 2 * at + 2):
            if child < size and heap[child] < bound:
                stack.append(child)
    return found


def _regrouped(slow: list[tuple[_Pending, int]]) -> list[_Pending]:
    """The events left to the per-instant path, as (event, rule) or (event, -1) for a whole event: in time
    order, the rules of one event together again (with their kept keys)."""
    slow.sort(key=_slow_order)  # in time order (one event may carry its record for one rule, not another)
    rest: list[_Pending] = []
    for event, i in slow:
        if i < 0 or len(event[4]) == 1:
            rest.append(event)
            continue
        kept = event[3]
        if _is_key(kept):  # the key of this rule (see _Pending)
            kept = cast(tuple[GroupKey, ...], kept)[event[4].index(i)]
        if rest and rest[-1][1] == event[1]:  # another rule of the same event
            time_ms, seq, line, before, matched = rest[-1]
            if _is_key(before):
                key = cast(GroupKey, kept)
                earlier = (cast(GroupKey, before),) if len(matched) == 1 else cast(tuple[GroupKey, ...], before)
                kept = (*earlier, key)
            rest[-1] = (time_ms, seq, line, kept, (*matched, i))
        else:
            rest.append((*event[:3], kept, (i,)))
    return rest
