"""Inhibition: a firing alert matching `source_matchers` mutes alerts matching `target_matchers` that have
the same values (or both lack) every label in `equal`. As in Alertmanager, an alert never inhibits itself, and
when the target also matches the source matchers, alerts that match both sides do not inhibit it (two
warnings do not mute each other)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamalert.notify.routing import Matcher, matches_all


@dataclass(frozen=True, slots=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]

    def inhibits(self, labels: Mapping[str, str], target_fp: str, firing: Mapping[str, Mapping[str, str]]) -> bool:
        if not matches_all(self.target, labels):
            return False
        two_sided = matches_all(self.source, labels)  # the target could inhibit too: such sources do not count
        for fp, source in firing.items():
            if fp == target_fp or not matches_all(self.source, source):
                continue
            if two_sided and matches_all(self.target, source):
                continue
            if all(source.get(name, "") == labels.get(name, "") for name in self.equal):
                return True
        return False
