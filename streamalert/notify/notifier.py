"""The notification stage the pipeline calls at every checkpoint: transitions in, notifications out.

It owns the dispatch state (groups), applies silences, inhibition and each receiver's minimum severity,
and turns every flush into one `Notification` per sink of the receiver. The pipeline commits the changed
groups and the new notifications (the outbox) in the same atomic checkpoint as the transitions that caused
them, so a transition leads to its notifications exactly once, whatever crashes in between.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import structlog

from streamalert.config.notify import NotifyConfig, build_route
from streamalert.decode import format_ms
from streamalert.model import Transition
from streamalert.notify.dispatch import Counts, Dispatch, Flush
from streamalert.notify.inhibit import InhibitRule
from streamalert.notify.model import SEVERITIES, Notification, fingerprint, severity_rank
from streamalert.notify.routing import parse_matchers
from streamalert.notify.silences import Silence, config_silence
from streamalert.notify.sinks.base import SinkConfig
from streamalert.notify.templates import Templates

_log = structlog.get_logger("streamalert.notify")


@dataclass(slots=True)
class NotifyChanges:
    groups: dict[bytes, bytes] = field(default_factory=dict)
    groups_deleted: list[bytes] = field(default_factory=list)
    outbox: list[Notification] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReceiverSinks:
    name: str
    min_rank: int
    sinks: tuple[tuple[str, SinkConfig], ...]  # ("slack/0", config)


class Notifier:
    def __init__(self, config: NotifyConfig) -> None:
        if config.route is None:
            raise ValueError("no route configured")
        self.external_url = config.notify.external_url
        self.templates = Templates(config.templates)  # TemplateError (a ValueError) names the file
        self.receivers: dict[str, ReceiverSinks] = {}
        for spec in config.receivers:
            sinks = tuple((name, sink_config) for name, _, sink_config in spec.sinks)
            rank = SEVERITIES.index(spec.min_severity) if spec.min_severity else 0
            self.receivers[spec.name] = ReceiverSinks(spec.name, rank, sinks)
        self.inhibit_rules = [
            InhibitRule(
                tuple(m for text in r.source_matchers for m in parse_matchers(text)),
                tuple(m for text in r.target_matchers for m in parse_matchers(text)),
                tuple(r.equal),
            )
            for r in config.inhibit_rules
        ]
        self.config_silences = [
            config_silence(s.matchers, s.starts_at, s.ends_at, s.created_by, s.comment) for s in config.silences
        ]
        self.silences: list[Silence] = list(self.config_silences)
        self.dispatch = Dispatch(
            build_route(config.route, config.named_intervals()), mute=self._mute, next_mute_change=self._next_change
        )
        self._firing: tuple[int, dict[str, dict[str, str]]] = (-1, {})

    @property
    def counts(self) -> Counts:
        return self.dispatch.counts

    def restore(self, groups: Mapping[bytes, bytes]) -> None:
        self.dispatch.restore(groups)

    def set_silences(self, stored: Iterable[Silence]) -> None:
        """The silences in force: the config's plus those stored (API-created)."""
        by_id = {s.id: s for s in self.config_silences}
        by_id.update((s.id, s) for s in stored)
        self.silences = list(by_id.values())

    def step(self, transitions: list[Transition], horizon_ms: int, *, final: bool = False) -> NotifyChanges:
        """Take the transitions, flush what is due before the horizon; with `final` (replay's end), also what
        is still waiting (Dispatch.finish)."""
        flushes = self.dispatch.step(transitions, horizon_ms)
        if final:
            flushes += self.dispatch.finish()
        return self._changes(flushes)

    def finish(self) -> NotifyChanges:
        return self._changes(self.dispatch.finish())

    def _changes(self, flushes: list[Flush]) -> NotifyChanges:
        outbox = [n for flush in flushes for n in self.notifications(flush)]
        upserts, deletes = self.dispatch.take_changes()
        return NotifyChanges(upserts, deletes, outbox)

    def notifications(self, flush: Flush) -> list[Notification]:
        """One notification per sink of the flush's receiver; a sink with send_resolved false gets only the
        firing alerts (and nothing when none fire)."""
        receiver = self.receivers[flush.receiver]
        out = []
        for sink_name, sink_config in receiver.sinks:
            alerts = flush.firing + (flush.resolved if sink_config.send_resolved else ())
            if not sink_config.send_resolved and (flush.only_resolved or not flush.firing):
                continue  # what changed is a resolve, and this sink is not told about resolves
            if not alerts:
                continue
            out.append(
                self.templated(
                    Notification(
                        id=flush.delivery_id(sink_name),
                        receiver=flush.receiver,
                        sink=sink_name,
                        group_key=flush.group_id,
                        group_labels=flush.group_labels,
                        alerts=alerts,
                        at=format_ms(flush.at_ms),
                        external_url=self.external_url,
                    ),
                    sink_config,
                )
            )
        return out

    def templated(self, notification: Notification, sink_config: SinkConfig) -> Notification:
        """The notification with the sink's templates rendered (at event time, once: the outbox keeps them).
        A template that fails is logged and counted, and that field keeps the sink's own format."""
        sources = sink_config.template_sources()
        if not sources:
            return notification
        rendered, errors = self.templates.render_fields(notification, sources)
        kind = notification.sink.partition("/")[0]
        for name, error in errors.items():
            key = (kind, name)
            self.counts.template_errors[key] = self.counts.template_errors.get(key, 0) + 1
            _log.warning(
                "template_error", receiver=notification.receiver, sink=notification.sink, field=name, error=error
            )
        return replace(notification, rendered=rendered)

    def _next_change(self, now: int) -> int | None:
        times = [t for s in self.silences for t in (s.starts_ms, s.ends_ms) if t > now]
        return min(times, default=None)

    def _mute(self, labels: Mapping[str, str], now: int, receiver: str) -> str | None:
        if severity_rank(dict(labels)) < self.receivers[receiver].min_rank:
            return "severity"
        if any(s.mutes(labels, now) for s in self.silences):
            return "silenced"
        if self.inhibit_rules:
            if self._firing[0] != self.dispatch.version:  # one scan per change, not one per muted check
                self._firing = (self.dispatch.version, self.dispatch.firing_alerts())
            firing = self._firing[1]
            fp = fingerprint(dict(labels))
            if any(rule.inhibits(labels, fp, firing) for rule in self.inhibit_rules):
                return "inhibited"
        return None
