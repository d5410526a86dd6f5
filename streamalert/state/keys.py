"""Every Redis key streamalert uses, and their idle expiries, defined in one place.

All keys of one namespace share the hash tag `{<namespace>}`, so they live in one Redis Cluster slot and a
checkpoint can be one MULTI/EXEC transaction. Run one namespace per application to spread load over a cluster.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "streamalert"
# Absence state and the engine's clock must survive long quiet periods; a month of no commits ends them.
LONG_TTL_MS: Final = 30 * 86_400_000
# Window series outlive their window by this margin, so a restart after a short outage still finds them.
WINDOW_TTL_MARGIN_MS: Final = 86_400_000


def _tag(namespace: str) -> str:
    if not namespace or "{" in namespace or "}" in namespace:
        raise ValueError(f"namespace {namespace!r} must be non-empty and contain no braces (it is the hash tag)")
    return f"{PREFIX}:{{{namespace}}}"


def meta(namespace: str) -> str:
    """HASH: the engine clock (newest, done_before, first_time, min_accepted, seq)."""
    return f"{_tag(namespace)}:meta"


def series(namespace: str, rule_id: str) -> str:
    """HASH: group key (JSON) -> series state (JSON) for one rule version (`name:digest`)."""
    return f"{_tag(namespace)}:series:{rule_id}"


def pending(namespace: str) -> str:
    """ZSET: events waiting in the reorder buffer, scored by event time (member: 8-byte seq + raw line)."""
    return f"{_tag(namespace)}:pending"


def held(namespace: str) -> str:
    """HASH (replay): lane -> 8-byte event time + raw line, of a line held until the next line of its lane."""
    return f"{_tag(namespace)}:held"


def lease(namespace: str) -> str:
    """STRING with a TTL: the token of the process allowed to write this namespace."""
    return f"{_tag(namespace)}:lease"


def epoch(namespace: str) -> str:
    """STRING (integer): incremented by every new lease holder; commits are fenced on it."""
    return f"{_tag(namespace)}:epoch"


def intake(namespace: str) -> str:
    """STREAM (replicas mode): one entry per Kafka batch, its matched records timed by a replica's intake."""
    return f"{_tag(namespace)}:intake"


def intake_offsets(namespace: str) -> str:
    """HASH (replicas mode): "topic/partition" -> the offset up to which the partition has been forwarded."""
    return f"{_tag(namespace)}:intake-offsets"


def intake_lanes(namespace: str) -> str:
    """HASH (replicas mode): "topic/partition" -> the partition's newest event time, as forwarded."""
    return f"{_tag(namespace)}:intake-lanes"


def config_digest(namespace: str) -> str:
    """STRING (replicas mode): the digest of the configuration the namespace's replicas should run (the last
    one a replica started with first or accepted on reload); see streamalert.replicas.ConfigSync."""
    return f"{_tag(namespace)}:config-digest"


def evaluating_config(namespace: str) -> str:
    """STRING (replicas mode): the digest of the configuration the evaluating process runs (written by it
    with every read of the intake stream); an intake that switched configuration forwards what both match
    until this shows its own (streamalert.replicas.Forwarder)."""
    return f"{_tag(namespace)}:evaluating-config"


def lane_status(namespace: str) -> str:
    """HASH (replicas mode): "topic/partition" -> "highwater fetched wall_ms" from the replica that owns it."""
    return f"{_tag(namespace)}:lane-status"


def transitions(namespace: str) -> str:
    """STREAM: every transition, appended in the checkpoint that decided it (field `t`: the JSON line)."""
    return f"{_tag(namespace)}:transitions"


def groups(namespace: str) -> str:
    """HASH: notification group key -> group state (JSON): its alerts, next flush, last notification."""
    return f"{_tag(namespace)}:groups"


def outbox(namespace: str) -> str:
    """STREAM: notifications decided and not yet delivered (field `n`: the JSON); deleted once delivered."""
    return f"{_tag(namespace)}:outbox"


def outbox_attempts(namespace: str) -> str:
    """HASH: outbox entry id -> delivery attempts so far."""
    return f"{_tag(namespace)}:outbox-attempts"


def dead_letters(namespace: str) -> str:
    """STREAM: notifications given up on after the configured attempts (field `r`: notification, error)."""
    return f"{_tag(namespace)}:dead-letters"


def notifications(namespace: str) -> str:
    """STREAM: history of delivered and dead-lettered notifications (field `r`), capped."""
    return f"{_tag(namespace)}:notifications"


def silences(namespace: str) -> str:
    """HASH: silence id -> silence (JSON); ZSET `...:silence-ends` scores each by its end time."""
    return f"{_tag(namespace)}:silences"


def silence_ends(namespace: str) -> str:
    return f"{_tag(namespace)}:silence-ends"


# The transition log keeps about this many entries (XADD MAXLEN ~): history, and the notification outbox's input.
TRANSITIONS_KEPT: Final = 100_000


def pattern(namespace: str) -> str:
    """Every key of a namespace, for reset."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in _tag(namespace)) + ":*"  # glob-escaped
