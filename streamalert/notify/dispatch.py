"""Grouping and dedup, Alertmanager's way, as pure functions of the dispatch state, the input and time.

Every alert transition is put in one group per route it matches (group = route + the values of the route's
`group_by` labels). A group flushes `group_wait` after its first alert and then every `group_interval` while it
holds alerts; each flush happens at its due time exactly, after every transition at or before that time. A
flush sends a notification when Alertmanager's dedup stage would (`needs_update`): a firing alert the last
notification did not have, all alerts resolved, a new resolved alert (with send_resolved), or
`repeat_interval` elapsed since the last notification. Muted alerts (silences, inhibition, below the
receiver's minimum severity, all of a route's alerts outside its active or inside its mute time intervals)
are left out before that decision. Resolved alerts leave the group after the
flush that saw them; an empty group is forgotten.

Time is event time: a transition counts at its own time and the caller says up to when the input is final
(`horizon`, exclusive). Replay and live mode therefore produce the same notifications at the same times.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from streamalert.decode import format_ms
from streamalert.model import Transition
from streamalert.notify.model import ZERO_TIME, Alert, fingerprint
from streamalert.notify.routing import Route

# (labels, now, receiver) -> why the alert is muted for that receiver ("silenced", "inhibited", "severity")
Mute = Callable[[Mapping[str, str], int, str], str | None]


@dataclass(slots=True)
class AlertEntry:
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    firing: bool
    starts_ms: int
    ends_ms: int | None
    value: float | int

    def to_alert(self) -> Alert:
        return Alert(
            fingerprint=self.fingerprint,
            status="firing" if self.firing else "resolved",
            labels=self.labels,
            annotations=self.annotations,
            starts_at=format_ms(self.starts_ms),
            ends_at=ZERO_TIME if self.ends_ms is None else format_ms(self.ends_ms),
            value=self.value,
        )

    def dump(self) -> list[Any]:
        return [self.fingerprint, self.labels, self.annotations, self.firing, self.starts_ms, self.ends_ms, self.value]

    @classmethod
    def load(cls, data: list[Any]) -> AlertEntry:
        return cls(data[0], data[1], data[2], data[3], data[4], data[5], data[6])


@dataclass(slots=True)
class Group:
    """One aggregation group and its notification log entry (what was last sent, and when)."""

    id: str  # route id + group labels: the group key
    route_id: str
    receiver: str
    labels: dict[str, str]
    alerts: dict[str, AlertEntry] = field(default_factory=dict)
    due_ms: int = 0  # next flush
    sent_firing: list[str] = field(default_factory=list)
    sent_resolved: list[str] = field(default_factory=list)
    sent_ms: int | None = None  # None: never notified

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "route": self.route_id,
                "receiver": self.receiver,
                "labels": self.labels,
                "alerts": [a.dump() for a in self.alerts.values()],
                "due": self.due_ms,
                "sent_firing": self.sent_firing,
                "sent_resolved": self.sent_resolved,
                "sent": self.sent_ms,
            }
        )

    @classmethod
    def load(cls, group_id: str, raw: bytes) -> Group:
        data = orjson.loads(raw)
        alerts = [AlertEntry.load(a) for a in data["alerts"]]
        return cls(
            id=group_id,
            route_id=data["route"],
            receiver=data["receiver"],
            labels=data["labels"],
            alerts={a.fingerprint: a for a in alerts},
            due_ms=data["due"],
            sent_firing=data["sent_firing"],
            sent_resolved=data["sent_resolved"],
            sent_ms=data["sent"],
        )


@dataclass(frozen=True, slots=True)
class Flush:
    """A group's flush that decided to notify: what the receiver is told."""

    group_id: str
    receiver: str
    group_labels: dict[str, str]
    at_ms: int
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    only_resolved: bool = False  # sent only because an alert resolved: not for sinks with send_resolved false

    def delivery_id(self, sink: str) -> str:
        """Stable for this group, flush time and sink: the same in every process, retry and restart."""
        return hashlib.sha256(f"{self.group_id}\x00{self.at_ms}\x00{sink}".encode()).hexdigest()[:32]


@dataclass(slots=True)
class Counts:
    silenced: int = 0  # muted alerts left out of a flush (silences and inhibition)
    deduplicated: int = 0  # firing alerts a flush did not send again (already notified, repeat not due)
    time_muted: int = 0  # firing alerts left out because their route was muted or not active at the time
    template_errors: dict[tuple[str, str], int] = field(default_factory=dict)  # (sink kind, field) -> failures


def alert_labels(t: Transition) -> dict[str, str]:
    """The labels routing, grouping and receivers see: the transition's labels and `alertname` (the rule)."""
    labels = dict(t.labels)
    labels["alertname"] = t.rule
    return labels


def group_key(route: Route, labels: Mapping[str, str]) -> str:
    """Alertmanager's form, `<route>:{name="value",...}`, values quoted with escapes (no two label sets collide)."""
    inner = ",".join(f"{k}={orjson.dumps(v).decode()}" for k, v in sorted(labels.items()))
    return f"{route.id}:{{{inner}}}"


class Dispatch:
    """The dispatch state (every group) and the steps that change it; changes are tracked for checkpoints."""

    def __init__(
        self, root: Route, mute: Mute | None = None, next_mute_change: Callable[[int], int | None] | None = None
    ) -> None:
        self.root = root
        self.routes = {r.id: r for r in root.walk()}
        self.mute = mute
        self.next_mute_change = next_mute_change  # the first time after `now` a silence starts or ends
        self.groups: dict[str, Group] = {}
        self._due: list[tuple[int, str]] = []  # heap of (due, group id); stale entries skipped
        self.dirty: set[str] = set()
        self.counts = Counts()
        self.version = 0  # changes whenever the set of firing alerts may have changed

    # ---- persistence -------------------------------------------------------------------------------------

    def restore(self, stored: Mapping[bytes, bytes]) -> None:
        """Continue from stored groups. Groups the current route tree would not make (a route removed or
        moved, its receiver or group_by changed, a route added before it that now takes their alerts) are
        dissolved and their alerts routed again, keeping what was already sent and when the group is due: nothing
        pages twice, a pending group is not flushed early or late, and every resolve still finds its alert."""
        orphans: list[Group] = []
        for raw_id, raw in stored.items():
            group = Group.load(raw_id.decode(), raw)
            route = self.routes.get(group.route_id)
            if route is not None and _fits(route, group) and self._routed_here(route, group):
                self.groups[group.id] = group
                heapq.heappush(self._due, (group.due_ms, group.id))
            else:
                orphans.append(group)
        for group in orphans:
            self.dirty.add(group.id)  # deleted by the next checkpoint unless a new group takes its key
            for entry in group.alerts.values():
                self._reroute(entry, group)
        self.version += 1

    def _routed_here(self, route: Route, group: Group) -> bool:
        """Every alert of the group still goes to its route (a route added before it may now take some)."""
        return all(route.id in {r.id for r in self.root.match(a.labels)} for a in group.alerts.values())

    def _reroute(self, entry: AlertEntry, old: Group) -> None:
        for route in self.root.match(entry.labels):
            labels = route.group_labels(entry.labels)
            gid = group_key(route, labels)
            group = self.groups.get(gid)
            if group is None:
                group = Group(gid, route.id, route.receiver, labels, due_ms=old.due_ms, sent_ms=old.sent_ms)
                self.groups[gid] = group
                heapq.heappush(self._due, (group.due_ms, gid))
            group.alerts[entry.fingerprint] = entry
            if entry.fingerprint in old.sent_firing and entry.fingerprint not in group.sent_firing:
                group.sent_firing.append(entry.fingerprint)
            if entry.fingerprint in old.sent_resolved and entry.fingerprint not in group.sent_resolved:
                group.sent_resolved.append(entry.fingerprint)
            if group.sent_ms is None:
                group.sent_ms = old.sent_ms
            self.dirty.add(gid)

    def take_changes(self) -> tuple[dict[bytes, bytes], list[bytes]]:
        """Groups changed since the last call: (upserts, deletes), keyed by group id."""
        upserts = {gid.encode(): self.groups[gid].dump() for gid in self.dirty if gid in self.groups}
        deletes = [gid.encode() for gid in self.dirty if gid not in self.groups]
        self.dirty = set()
        return upserts, deletes

    # ---- steps -------------------------------------------------------------------------------------------

    def step(self, transitions: Iterable[Transition], horizon_ms: int) -> list[Flush]:
        """Take transitions (in time order) and flush every group due before `horizon_ms`, in time order."""
        flushes: list[Flush] = []
        for t in transitions:
            flushes.extend(self._flush_due(t.at_ms))  # due strictly before this transition's time
            self._ingest(t)
        flushes.extend(self._flush_due(horizon_ms))
        return flushes

    def finish(self) -> list[Flush]:
        """End of replay input: every group still waiting for its first notification or holding a resolve
        not yet sent is flushed at its due time (later repeats are not invented)."""
        flushes: list[Flush] = []
        for group in sorted(self.groups.values(), key=lambda g: (g.due_ms, g.id)):
            if group.sent_ms is None or any(not a.firing for a in group.alerts.values()):
                flush = self._flush(group, group.due_ms)
                if flush is not None:
                    flushes.append(flush)
        return flushes

    def firing_alerts(self) -> dict[str, dict[str, str]]:
        """Every firing alert the dispatcher holds: fingerprint -> labels (inhibition sources)."""
        return {fp: a.labels for g in self.groups.values() for fp, a in g.alerts.items() if a.firing}

    def _ingest(self, t: Transition) -> None:
        self.version += 1
        labels = alert_labels(t)
        fp = fingerprint(labels)
        firing = t.state.value == "firing"
        for route in self.root.match(labels):
            group_labels = route.group_labels(labels)
            gid = group_key(route, group_labels)
            group = self.groups.get(gid)
            if group is None:
                if not firing:
                    continue  # a resolve for an alert this route never saw (or already forgot)
                group = Group(gid, route.id, route.receiver, group_labels, due_ms=t.at_ms + route.group_wait_ms)
                self.groups[gid] = group
                heapq.heappush(self._due, (group.due_ms, gid))
            entry = group.alerts.get(fp)
            if firing:
                starts = entry.starts_ms if entry is not None and entry.firing else t.at_ms
                group.alerts[fp] = AlertEntry(fp, labels, dict(t.annotations), True, starts, None, t.value)
            elif entry is not None:
                group.alerts[fp] = AlertEntry(fp, labels, dict(t.annotations), False, entry.starts_ms, t.at_ms, t.value)
            self.dirty.add(gid)

    def _flush_due(self, before_ms: int) -> list[Flush]:
        flushes: list[Flush] = []
        while self._due and self._due[0][0] < before_ms:
            due, gid = heapq.heappop(self._due)
            group = self.groups.get(gid)
            if group is None or group.due_ms != due:
                continue  # stale heap entry
            flush = self._flush(group, due, before_ms)
            if flush is not None:
                flushes.append(flush)
        return flushes

    def _flush(self, group: Group, now: int, before_ms: int | None = None) -> Flush | None:
        route = self.routes[group.route_id]
        firing: list[AlertEntry] = []
        resolved: list[AlertEntry] = []
        # Alertmanager's TimeActive and TimeMute stages: outside the route's active intervals or inside a mute
        # interval (at the flush's event time), the whole flush is dropped before dedup, like a silence
        timed = route.times.muted(now) if route.times is not None else None
        for entry in sorted(group.alerts.values(), key=lambda a: (a.starts_ms, a.fingerprint)):
            reason = timed
            if reason is None and self.mute is not None:
                reason = self.mute(entry.labels, now, group.receiver)
            if reason is None:
                (firing if entry.firing else resolved).append(entry)  # muted alerts, resolved ones too, are left out
            elif timed is not None and entry.firing:
                self.counts.time_muted += 1
            elif reason != "severity" and entry.firing:
                self.counts.silenced += 1
        firing_set = {a.fingerprint for a in firing}
        resolved_set = {a.fingerprint for a in resolved}
        # everything muted: nothing is sent and the notification log stays as it was (Alertmanager's pipeline
        # stops before its dedup stage), so an alert notified before a silence is not paged again after it
        why = (
            needs_update(group, firing_set, resolved_set, now, route.repeat_interval_ms) if firing or resolved else None
        )
        flush = None
        if why is not None:
            flush = Flush(
                group.id,
                group.receiver,
                group.labels,
                now,
                tuple(a.to_alert() for a in firing),
                tuple(a.to_alert() for a in resolved),
                only_resolved=why == "resolved",
            )
            group.sent_firing, group.sent_resolved, group.sent_ms = sorted(firing_set), sorted(resolved_set), now
        else:
            self.counts.deduplicated += len(firing)
        for fp in [fp for fp, a in group.alerts.items() if not a.firing]:
            del group.alerts[fp]  # resolved alerts leave the group once a flush has seen them
            self.version += 1
        self.dirty.add(group.id)
        if not group.alerts:
            del self.groups[group.id]
        else:
            group.due_ms = self._next_flush(group, now, route, before_ms)
            heapq.heappush(self._due, (group.due_ms, group.id))
        return flush

    def _next_flush(self, group: Group, now: int, route: Route, before_ms: int | None) -> int:
        """The next flush that can decide differently. After a flush, the group's next flushes change nothing
        until input arrives (not before `before_ms`), repeat_interval elapses or a silence starts or ends:
        those flushes are skipped, staying on the group_interval grid (a long quiet stretch would otherwise
        cost one step per interval)."""
        interval = route.group_interval_ms
        if before_ms is None:
            return now + interval
        bound = before_ms
        if group.sent_ms is not None:
            bound = min(bound, group.sent_ms + route.repeat_interval_ms + 1)
        if self.next_mute_change is not None:
            change = self.next_mute_change(now)
            if change is not None:
                bound = min(bound, change)
        if route.times is not None:  # the flush after the route's time intervals may say otherwise
            bound = min(bound, route.times.next_change_ms(now) or bound)
        steps = max(1, -(-(bound - now) // interval))  # ceiling division: the first grid point at or after bound
        return now + steps * interval


def _fits(route: Route, group: Group) -> bool:
    """The stored group is one the route makes now: same receiver, same group_by, same key."""
    if route.receiver != group.receiver or group.id != group_key(route, group.labels):
        return False
    return all(route.group_labels(a.labels) == group.labels for a in group.alerts.values())


def needs_update(group: Group, firing: set[str], resolved: set[str], now: int, repeat_ms: int) -> str | None:
    """Alertmanager's DedupStage.needsUpdate, saying why: "first", "firing" (a new firing alert), "cleared"
    (everything resolved), "resolved" (a new resolved alert: only sinks with send_resolved care), "repeat";
    None: nothing to send."""
    if group.sent_ms is None:
        return "first" if firing else None
    if not firing <= set(group.sent_firing):
        return "firing"
    if not firing:
        return "cleared" if group.sent_firing else None
    if not resolved <= set(group.sent_resolved):
        return "resolved"
    return "repeat" if group.sent_ms + repeat_ms < now else None  # strictly, as Alertmanager
