"""Silences: matchers plus a time range, author and comment. A silence mutes the firing alerts it matches
while `starts <= now < ends`; after `ends` it no longer applies and stores drop it."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from streamalert.decode import format_ms, parse_time
from streamalert.notify.routing import Matcher, matches_all, parse_matchers


class SilenceError(ValueError):
    """A silence that cannot be accepted; the message names the field."""


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str

    def active(self, now: int) -> bool:
        return self.starts_ms <= now < self.ends_ms

    def mutes(self, labels: dict[str, str] | Any, now: int) -> bool:
        return self.active(now) and matches_all(self.matchers, labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "startsAt": format_ms(self.starts_ms),
            "endsAt": format_ms(self.ends_ms),
            "createdBy": self.created_by,
            "comment": self.comment,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> Silence:
        return parse_silence(orjson.loads(raw), now_ms=None)


def parse_silence(data: Any, now_ms: int | None, silence_id: str | None = None) -> Silence:
    """A silence from its JSON form (the API's and the store's): matchers (strings), startsAt (default now),
    endsAt, createdBy, comment. With `now_ms`, an end in the past is refused."""
    if not isinstance(data, dict):
        raise SilenceError("a silence is a JSON object")
    raw_matchers = data.get("matchers")
    if not isinstance(raw_matchers, list) or not raw_matchers or not all(isinstance(m, str) for m in raw_matchers):
        raise SilenceError("matchers: a non-empty list of matcher strings such as 'severity=\"warning\"'")
    try:
        matchers = tuple(m for text in raw_matchers for m in parse_matchers(text))
    except ValueError as exc:
        raise SilenceError(f"matchers: {exc}") from None
    starts = _time(data, "startsAt", now_ms)
    ends = _time(data, "endsAt", None)
    if starts is None or ends is None:
        raise SilenceError("endsAt: required (ISO 8601); startsAt defaults to now")
    if now_ms is not None and ends <= now_ms:
        raise SilenceError("endsAt: already past")
    if ends <= starts:
        raise SilenceError("endsAt: must be after startsAt")
    for name in ("createdBy", "comment"):
        if not isinstance(data.get(name, ""), str):
            raise SilenceError(f"{name}: must be a string")
    return Silence(
        id=silence_id or str(data.get("id") or secrets.token_hex(8)),
        matchers=matchers,
        starts_ms=starts,
        ends_ms=ends,
        created_by=str(data.get("createdBy", "")),
        comment=str(data.get("comment", "")),
    )


def config_silence(matchers: list[str], starts_at: str | None, ends_at: str, created_by: str, comment: str) -> Silence:
    """A silence written in the config; its id is derived from its content, so restarts do not duplicate it."""
    data = {"matchers": matchers, "endsAt": ends_at, "createdBy": created_by, "comment": comment}
    data["startsAt"] = starts_at or "1970-01-01T00:00:00Z"
    digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return parse_silence(data, now_ms=None, silence_id=f"config-{digest}")


def _time(data: dict[str, Any], name: str, default: int | None) -> int | None:
    value = data.get(name)
    if value is None:
        return default
    parsed = parse_time(value)
    if parsed is None:
        raise SilenceError(f"{name}: cannot read {value!r} as a time (ISO 8601)")
    return parsed
