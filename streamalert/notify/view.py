"""What the Alertmanager-compatible API (notify/amapi.py) and the web UI (streamalert/ui) read and change.

- Alerts are those of the notification groups as last committed to the store (the dispatcher's state), so every
  replica shows the same ones and an alert is listed under each receiver it is routed to. An alert stays in
  its groups until the flush after it resolved; `firing` tells the two apart.
- Whether an alert is silenced or inhibited is judged now, in notification time (event time, `behind_ms`
  behind the wall clock), with the silences in force (config and stored) and the inhibit rules; receivers'
  `min_severity` is not shown as a mute (Alertmanager has no such thing).
- Silences: the config's plus those stored, as the plain API (notify/api.py) lists them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamalert.clock import Clock
from streamalert.decode import format_ms, parse_time
from streamalert.notify.dispatch import Group
from streamalert.notify.inhibit import InhibitRule
from streamalert.notify.silences import Silence, SilenceError, parse_silence
from streamalert.state.base import Store


class SilenceNotFound(LookupError):
    """No silence with this id is in force or scheduled."""


class SilenceFromConfig(ValueError):
    """The silence comes from the config file: it cannot be changed or expired through the API."""


@dataclass(frozen=True, slots=True)
class AlertView:
    fingerprint: str
    labels: dict[str, str]  # `alertname` included
    annotations: dict[str, str]
    firing: bool
    starts_ms: int
    ends_ms: int | None  # None while firing
    value: float | int
    receivers: tuple[str, ...]
    silenced_by: tuple[str, ...]  # silence ids
    inhibited_by: tuple[str, ...]  # fingerprints of the inhibiting alerts

    @property
    def suppressed(self) -> bool:
        return bool(self.silenced_by or self.inhibited_by)


@dataclass(frozen=True, slots=True)
class GroupView:
    key: str
    receiver: str
    labels: dict[str, str]
    alerts: tuple[AlertView, ...]


@dataclass(frozen=True, slots=True)
class ListedSilence:
    silence: Silence
    source: str  # "config" or "api"


class NotifyView:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        config_silences: Sequence[Silence] = (),
        behind_ms: int = 0,
        inhibit_rules: Sequence[InhibitRule] = (),
    ) -> None:
        self.store = store
        self.clock = clock
        self.config_silences = list(config_silences)
        self.behind_ms = behind_ms
        self.inhibit_rules = list(inhibit_rules)

    def now_ms(self) -> int:
        """Notification time: what silences and inhibitions are judged at."""
        return self.clock.now_ms() - self.behind_ms

    # ---- silences -------------------------------------------------------------------------------------------

    async def silences(self) -> list[ListedSilence]:
        """Silences in force or scheduled, by start then id (ended ones are not kept)."""
        now = self.now_ms()
        listed = [ListedSilence(s, "config") for s in self.config_silences if s.ends_ms > now]
        listed += [ListedSilence(Silence.from_json(raw), "api") for raw in await self.store.silences(now)]
        return sorted(listed, key=lambda item: (item.silence.starts_ms, item.silence.id))

    async def silence(self, silence_id: str) -> ListedSilence:
        for item in await self.silences():
            if item.silence.id == silence_id:
                return item
        raise SilenceNotFound(silence_id)

    async def create_silence(self, data: Mapping[str, Any], replace: str | None = None) -> Silence:
        """Store a silence from its JSON form (see parse_silence); startsAt defaults to now in notification
        time, so it covers the alerts being flushed right now. With `replace`, the stored silence of that id
        takes the new content and keeps its id. A start at or before the
        wall clock counts as now. Raises SilenceError, SilenceNotFound or SilenceFromConfig."""
        if replace is not None:
            found = await self.silence(replace)
            if found.source == "config":
                raise SilenceFromConfig(replace)
        data = {key: value for key, value in data.items() if key != "id"}  # ids are ours
        raw = data.get("startsAt")
        starts = None if raw is None else parse_time(raw)
        if raw is None:
            data["startsAt"] = format_ms(self.now_ms())
        elif starts is not None and starts <= self.clock.now_ms():
            # Started by the wall clock (amtool sends its "now"): it starts as far back as notification time
            # runs behind, so it mutes the alerts being flushed right now too.
            data["startsAt"] = format_ms(min(starts, self.now_ms()))
        silence = parse_silence(data, now_ms=self.clock.now_ms(), silence_id=replace)
        await self.store.put_silence(silence.id, silence.to_json())
        return silence

    async def expire_silence(self, silence_id: str) -> None:
        """End a stored silence at once. Raises SilenceFromConfig or SilenceNotFound."""
        if any(s.id == silence_id for s in self.config_silences):
            raise SilenceFromConfig(silence_id)
        if not await self.store.delete_silence(silence_id):
            raise SilenceNotFound(silence_id)

    # ---- alerts ---------------------------------------------------------------------------------------------

    async def groups(self) -> list[GroupView]:
        """The notification groups with their alerts' status, by receiver then group key."""
        stored = [Group.load(key.decode(), raw) for key, raw in (await self.store.groups()).items()]
        now = self.now_ms()
        silences = [item.silence for item in await self.silences() if item.silence.active(now)]
        firing = {fp: a.labels for g in stored for fp, a in g.alerts.items() if a.firing}
        receivers: dict[str, set[str]] = {}
        for group in stored:
            for fp in group.alerts:
                receivers.setdefault(fp, set()).add(group.receiver)
        views: dict[str, AlertView] = {}
        out = []
        for group in sorted(stored, key=lambda g: (g.receiver, g.id)):
            alerts = []
            for fp, entry in sorted(group.alerts.items(), key=lambda item: (item[1].starts_ms, item[0])):
                if fp not in views:
                    views[fp] = AlertView(
                        fingerprint=fp,
                        labels=entry.labels,
                        annotations=entry.annotations,
                        firing=entry.firing,
                        starts_ms=entry.starts_ms,
                        ends_ms=entry.ends_ms,
                        value=entry.value,
                        receivers=tuple(sorted(receivers[fp])),
                        silenced_by=tuple(s.id for s in silences if s.mutes(entry.labels, now)),
                        inhibited_by=self._inhibitors(fp, entry.labels, firing) if entry.firing else (),
                    )
                alerts.append(views[fp])
            out.append(GroupView(group.id, group.receiver, group.labels, tuple(alerts)))
        return out

    async def alerts(self) -> list[AlertView]:
        """Every alert of the groups once (its receivers merged), by start time then fingerprint."""
        unique = {a.fingerprint: a for group in await self.groups() for a in group.alerts}
        return sorted(unique.values(), key=lambda a: (a.starts_ms, a.fingerprint))

    def _inhibitors(self, fp: str, labels: dict[str, str], firing: dict[str, dict[str, str]]) -> tuple[str, ...]:
        """The firing alerts that inhibit this one (InhibitRule.inhibits asked one source at a time)."""
        if not self.inhibit_rules:
            return ()
        found = []
        for source_fp, source in sorted(firing.items()):
            if any(rule.inhibits(labels, fp, {source_fp: source}) for rule in self.inhibit_rules):
                found.append(source_fp)
        return tuple(found)


def silence_error_text(exc: Exception) -> str:
    """The client-facing message of a refused silence change."""
    if isinstance(exc, SilenceNotFound):
        return "silence not found"  # amtool's `silence import` looks for these words to create it anew
    if isinstance(exc, SilenceFromConfig):
        return "a silence from the config file: change it there"
    if isinstance(exc, SilenceError):
        return str(exc)
    raise TypeError(exc)
