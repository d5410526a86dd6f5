"""Timelines of grouping, dedup, repeat, resolve, silences and inhibition, driven in event time.

Each test feeds transitions at exact times and says up to when the input is final (the horizon), as the
pipeline does at every checkpoint, and checks which notifications come out, when and with what.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamalert.config.notify import NotifyConfig
from streamalert.decode import format_ms
from streamalert.model import AlertState, Transition
from streamalert.notify.model import Notification
from streamalert.notify.notifier import Notifier
from streamalert.notify.silences import parse_silence

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
S = 1000
M = 60 * S


def at(ms: int) -> str:
    return format_ms(ms)


def config(route: dict[str, Any], receivers: list[dict[str, Any]] | None = None, **extra: Any) -> NotifyConfig:
    names = receivers or [{"name": "team", "stdout_configs": [{}]}]
    return NotifyConfig.model_validate({"route": route, "receivers": names, **extra})


def fire(ms: int, rule: str = "db_errors", value: float = 1, **labels: str) -> Transition:
    labels.setdefault("severity", "warning")
    return Transition(ms, rule, AlertState.FIRING, tuple(sorted(labels.items())), value, (("summary", rule),))


def resolve(ms: int, rule: str = "db_errors", **labels: str) -> Transition:
    labels.setdefault("severity", "warning")
    return Transition(ms, rule, AlertState.RESOLVED, tuple(sorted(labels.items())), 0, (("summary", rule),))


class Timeline:
    """Feeds a notifier like the pipeline does, one checkpoint per call, and collects what it sends."""

    def __init__(self, cfg: NotifyConfig) -> None:
        self.notifier = Notifier(cfg)
        self.sent: list[Notification] = []

    def step(self, horizon: int, *transitions: Transition) -> list[Notification]:
        out = self.notifier.step(list(transitions), horizon).outbox
        self.sent += out
        return out


def summary(notes: list[Notification]) -> list[tuple[str, str, str, list[str]]]:
    """(at, receiver, status, sorted alertname:host:status) per notification."""
    return [
        (n.at, n.receiver, n.status, sorted(f"{a.name}:{a.labels.get('host', '')}:{a.status}" for a in n.alerts))
        for n in notes
    ]


ROUTE: dict[str, Any] = {"receiver": "team", "group_by": ["alertname"], "group_wait": "30s", "group_interval": "5m"}


def test_group_wait_collects_alerts_into_one_first_notification() -> None:
    tl = Timeline(config(ROUTE))
    assert tl.step(T0 + 1, fire(T0, host="a")) == []
    assert tl.step(T0 + 20 * S, fire(T0 + 10 * S, host="b")) == []
    assert tl.step(T0 + 30 * S) == []  # due at T0+30s: final only once the horizon passes it
    out = tl.step(T0 + 30 * S + 1)
    assert summary(out) == [(at(T0 + 30 * S), "team", "firing", ["db_errors:a:firing", "db_errors:b:firing"])]
    assert out[0].group_labels == {"alertname": "db_errors"}


def test_group_wait_zero_pages_at_the_transition_time() -> None:
    tl = Timeline(config({**ROUTE, "group_wait": "0s"}))
    out = tl.step(T0 + 1, fire(T0, host="a"))
    assert summary(out) == [(at(T0), "team", "firing", ["db_errors:a:firing"])]


def test_updates_wait_for_group_interval() -> None:
    tl = Timeline(config(ROUTE))
    tl.step(T0 + 31 * S, fire(T0, host="a"))  # first notification at T0+30s
    assert len(tl.sent) == 1
    # a new alert joins at T0+1m: not sent before the next flush, T0+30s+5m
    assert tl.step(T0 + 5 * M, fire(T0 + M, host="b")) == []
    out = tl.step(T0 + 5 * M + 31 * S)
    assert summary(out) == [(at(T0 + 5 * M + 30 * S), "team", "firing", ["db_errors:a:firing", "db_errors:b:firing"])]


def test_unchanged_firing_group_is_resent_after_repeat_interval_only() -> None:
    tl = Timeline(config({**ROUTE, "repeat_interval": "1h"}))
    tl.step(T0 + 31 * S, fire(T0, host="a"))
    first = T0 + 30 * S
    # flushes every 5m find nothing new: deduplicated, not sent
    assert tl.step(first + 60 * M) == []  # the flush at exactly first+1h: sent+repeat is not before it
    assert tl.notifier.counts.deduplicated >= 1
    out = tl.step(first + 65 * M + 1)
    assert summary(out) == [(at(first + 65 * M), "team", "firing", ["db_errors:a:firing"])]


def test_a_long_quiet_stretch_skips_flushes_but_keeps_the_grid() -> None:
    """30 days without input: the repeats land on the group_interval grid, without a step per interval."""
    tl = Timeline(config({**ROUTE, "repeat_interval": "1d"}))
    tl.step(T0 + 31 * S, fire(T0, host="a"))
    first = T0 + 30 * S
    out = tl.step(first + 30 * 24 * 60 * M + 1)
    # a repeat on the first grid point after each day (sent + 1d is not before the flush at exactly 1d)
    expected = _repeats(first, 24 * 60 * M, 5 * M, first + 30 * 24 * 60 * M)
    assert len(expected) == 29
    assert [n.at for n in out] == [at(t) for t in expected]
    assert tl.notifier.counts.deduplicated < 100  # 8640 intervals in 30 days: most were skipped


def _repeats(sent: int, repeat: int, interval: int, end: int) -> list[int]:
    out: list[int] = []
    while True:
        nxt = sent + ((repeat + 1 + interval - 1) // interval) * interval  # first grid point after sent+repeat
        if nxt > end:
            return out
        out.append(nxt)
        sent = nxt


def test_resolved_alerts_are_sent_and_leave_the_group() -> None:
    tl = Timeline(config(ROUTE))
    tl.step(T0 + 31 * S, fire(T0, host="a"), fire(T0, host="b"))
    out = tl.step(T0 + 6 * M, resolve(T0 + 2 * M, host="a"))
    assert summary(out) == [(at(T0 + 5 * M + 30 * S), "team", "firing", ["db_errors:a:resolved", "db_errors:b:firing"])]
    resolved = next(a for a in out[0].alerts if a.status == "resolved")
    assert resolved.ends_at == at(T0 + 2 * M)
    out = tl.step(T0 + 11 * M, resolve(T0 + 7 * M, host="b"))
    assert summary(out) == [(at(T0 + 10 * M + 30 * S), "team", "resolved", ["db_errors:b:resolved"])]
    assert tl.notifier.dispatch.groups == {}  # empty groups are forgotten
    # the same alert firing again starts a new group with a new group_wait
    out = tl.step(T0 + 21 * M, fire(T0 + 20 * M, host="b"))
    assert summary(out) == [(at(T0 + 20 * M + 30 * S), "team", "firing", ["db_errors:b:firing"])]
    assert out[0].id != tl.sent[0].id


def test_send_resolved_false_drops_resolved_alerts_and_all_resolved_messages() -> None:
    receivers = [{"name": "team", "stdout_configs": [{"send_resolved": False}, {}]}]
    tl = Timeline(config(ROUTE, receivers))
    tl.step(T0 + 31 * S, fire(T0, host="a"))
    out = tl.step(T0 + 6 * M, resolve(T0 + M, host="a"))
    assert [(n.sink, n.status) for n in out] == [("stdout/1", "resolved")]


def test_alert_resolved_before_its_first_flush_is_never_sent() -> None:
    tl = Timeline(config(ROUTE))
    assert tl.step(T0 + 5 * M, fire(T0, host="a"), resolve(T0 + 10 * S, host="a")) == []
    assert tl.notifier.dispatch.groups == {}


def test_silence_mutes_until_it_ends_then_the_alert_is_sent() -> None:
    silence = {"matchers": ['host="a"'], "starts_at": at(T0 - M), "ends_at": at(T0 + 7 * M), "comment": "maint"}
    tl = Timeline(config(ROUTE, silences=[silence]))
    out = tl.step(T0 + 31 * S, fire(T0, host="a"), fire(T0, host="b"))
    assert summary(out) == [(at(T0 + 30 * S), "team", "firing", ["db_errors:b:firing"])]
    assert tl.notifier.counts.silenced == 1
    assert tl.step(T0 + 5 * M + 31 * S) == []  # still silenced at T0+5m30s
    out = tl.step(T0 + 10 * M + 31 * S)  # the silence ended at T0+7m: sent at the next flush
    assert summary(out) == [(at(T0 + 10 * M + 30 * S), "team", "firing", ["db_errors:a:firing", "db_errors:b:firing"])]


def test_api_silences_replace_on_refresh_and_keep_config_ones() -> None:
    tl = Timeline(config({**ROUTE, "group_wait": "0s"}))
    api = parse_silence({"matchers": ['host="a"'], "endsAt": at(T0 + M)}, now_ms=T0)
    tl.notifier.set_silences([api])
    assert tl.step(T0 + 1, fire(T0, host="a")) == []
    assert tl.notifier.counts.silenced == 1


def test_inhibition_mutes_warning_while_critical_fires_with_equal_labels() -> None:
    rules = [{"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'], "equal": ["host"]}]
    route = {**ROUTE, "group_by": ["alertname", "host"], "group_wait": "0s"}
    tl = Timeline(config(route, inhibit_rules=rules))
    out = tl.step(
        T0 + 1,
        fire(T0, rule="db_down", host="a", severity="critical"),
        fire(T0, rule="db_errors", host="a"),
        fire(T0, rule="db_errors", host="b"),
    )
    assert summary(out) == [
        (at(T0), "team", "firing", ["db_down:a:firing"]),
        (at(T0), "team", "firing", ["db_errors:b:firing"]),
    ]
    assert tl.notifier.counts.silenced == 1
    # the critical resolves: the warning on host a is no longer inhibited and is sent at its next flush
    out = tl.step(T0 + 5 * M + 1, resolve(T0 + M, rule="db_down", host="a", severity="critical"))
    assert summary(out) == [
        (at(T0 + 5 * M), "team", "resolved", ["db_down:a:resolved"]),
        (at(T0 + 5 * M), "team", "firing", ["db_errors:a:firing"]),
    ]


def test_routing_continue_and_minimum_severity() -> None:
    route = {
        **ROUTE,
        "group_wait": "0s",
        "routes": [
            {"matchers": ['severity=~"critical|warning"'], "receiver": "pager", "continue": True},
            {"matchers": ['team="payments"'], "receiver": "payments"},
        ],
    }
    receivers = [
        {"name": "team", "stdout_configs": [{}]},
        {"name": "pager", "min_severity": "critical", "stdout_configs": [{}]},
        {"name": "payments", "stdout_configs": [{}]},
    ]
    tl = Timeline(config(route, receivers))
    out = tl.step(
        T0 + 1,
        fire(T0, rule="stripe", team="payments", severity="critical"),
        fire(T0, rule="slow", team="payments", severity="warning"),
    )
    # warning reaches pager's group but is below its minimum: not sent there
    assert sorted((n.receiver, n.alerts[0].name) for n in out) == [
        ("pager", "stripe"),
        ("payments", "slow"),
        ("payments", "stripe"),
    ]


def test_state_survives_a_restart_between_checkpoints() -> None:
    cfg = config({**ROUTE, "repeat_interval": "1h"})
    first = Timeline(cfg)
    changes = first.notifier.step([fire(T0, host="a")], T0 + 31 * S)  # what the checkpoint stores
    assert len(changes.outbox) == 1
    assert changes.groups_deleted == []
    stored = changes.groups
    second = Timeline(cfg)
    second.notifier.restore(stored)
    assert second.step(T0 + 30 * S + 60 * M) == []  # no duplicate first notification after the restart
    out = second.step(T0 + 30 * S + 65 * M + 1)
    assert summary(out) == [(at(T0 + 30 * S + 65 * M), "team", "firing", ["db_errors:a:firing"])]


@pytest.mark.parametrize("sink_count", [1, 3])
def test_delivery_ids_are_stable_and_distinct_per_sink(sink_count: int) -> None:
    receivers = [{"name": "team", "stdout_configs": [{} for _ in range(sink_count)]}]
    ids = []
    for _ in range(2):
        tl = Timeline(config({**ROUTE, "group_wait": "0s"}, receivers))
        ids.append([n.id for n in tl.step(T0 + 1, fire(T0, host="a"))])
    assert ids[0] == ids[1]
    assert len(set(ids[0])) == sink_count


# ---- found in review: each of these failed before its fix ----------------------------------------------------


def test_send_resolved_false_sink_gets_no_repeat_when_one_alert_of_a_group_resolves() -> None:
    receivers = [{"name": "team", "stdout_configs": [{"send_resolved": False}, {}]}]
    tl = Timeline(config(ROUTE, receivers))
    tl.step(T0 + 31 * S, fire(T0, host="a"), fire(T0, host="b"))
    out = tl.step(T0 + 6 * M, resolve(T0 + M, host="b"))
    # the resolve is news only to the sink that is told about resolves; the other already knows "a fires"
    assert [(n.sink, n.status, len(n.alerts)) for n in out] == [("stdout/1", "firing", 2)]


def test_an_alert_paged_before_a_silence_is_not_paged_again_when_it_ends() -> None:
    silence = {"matchers": ['host="a"'], "starts_at": at(T0 + M), "ends_at": at(T0 + 7 * M)}
    tl = Timeline(config({**ROUTE, "repeat_interval": "4h"}, silences=[silence]))
    assert len(tl.step(T0 + 31 * S, fire(T0, host="a"))) == 1  # paged at T0+30s, before the silence
    # silenced at the flush of T0+5m30s (everything muted: the notification log is left alone), not after
    assert tl.step(T0 + 60 * M) == []


def test_a_silenced_alert_that_resolves_is_not_announced() -> None:
    silence = {"matchers": ['host="b"'], "ends_at": at(T0 + 60 * M)}
    tl = Timeline(config(ROUTE, silences=[silence]))
    tl.step(T0 + 31 * S, fire(T0, host="a"), fire(T0, host="b"))
    assert summary(tl.sent) == [(at(T0 + 30 * S), "team", "firing", ["db_errors:a:firing"])]
    assert tl.step(T0 + 6 * M, resolve(T0 + M, host="b")) == []


def test_two_sided_inhibition_does_not_mute_both_alerts() -> None:
    source, target = 'severity=~"critical|warning"', 'severity="warning"'
    rules = [{"source_matchers": [source], "target_matchers": [target], "equal": ["cluster"]}]
    route = {**ROUTE, "group_by": ["alertname", "host"], "group_wait": "0s"}
    tl = Timeline(config(route, inhibit_rules=rules))
    out = tl.step(T0 + 1, fire(T0, host="a", cluster="c1"), fire(T0, host="b", cluster="c1"))
    assert sorted(n.alerts[0].labels["host"] for n in out) == ["a", "b"]
    out = tl.step(T0 + 2 * M, fire(T0 + M, rule="db_down", host="c", cluster="c1", severity="critical"))
    assert [n.alerts[0].name for n in out] == ["db_down"]  # the critical does inhibit the warnings' updates


def test_replay_end_sends_pending_resolves() -> None:
    tl = Timeline(config(ROUTE))
    tl.step(T0 + 20 * M + 10 * S, fire(T0, host="a"), resolve(T0 + 20 * M, host="a"))  # input ends at 20m10s
    assert [n.status for n in tl.sent] == ["firing"]  # the resolve waits for the flush at T0+20m30s
    out = tl.notifier.finish().outbox
    assert summary(out) == [(at(T0 + 20 * M + 30 * S), "team", "resolved", ["db_errors:a:resolved"])]


def test_group_keys_of_different_label_sets_never_collide() -> None:
    route = {**ROUTE, "group_by": ["a", "b"], "group_wait": "0s"}
    tl = Timeline(config(route))
    out = tl.step(T0 + 1, fire(T0, a='x",b="y'), fire(T0, a="x", b="y"))
    assert len(out) == 2
    assert len({n.group_key for n in out}) == 2


HOST_A: dict[str, Any] = {"matchers": ['host="a"'], "receiver": "team"}
OTHER: dict[str, Any] = {"matchers": ['host="zz"'], "receiver": "team"}


RENAMED: list[dict[str, Any]] = [{"name": "renamed", "stdout_configs": [{}]}]
CHANGES: list[dict[str, Any]] = [
    {"receivers": RENAMED, "route": {**ROUTE, "receiver": "renamed"}},
    {"route": {**ROUTE, "group_by": ["alertname", "host"]}},
    {"before": {**ROUTE, "routes": [HOST_A]}, "route": {**ROUTE, "routes": [OTHER, HOST_A]}},
]


@pytest.mark.parametrize("change", CHANGES, ids=["receiver-renamed", "group-by-changed", "route-inserted-before"])
def test_a_changed_route_tree_keeps_stored_alerts_without_paging_twice(change: dict[str, Any]) -> None:
    """Restart with a changed tree: the stored groups are re-routed, the firing alert is not paged again,
    and its resolve is still delivered (before the fix: a crash, a group repeating FIRING for ever, or a
    lost resolve)."""
    first = Timeline(config(change.get("before", ROUTE)))
    stored = first.notifier.step([fire(T0, host="a")], T0 + 31 * S).groups
    assert len(first.sent) == 0  # step() on the notifier directly: the one notification is in that outbox
    receivers = change.get("receivers", [{"name": "team", "stdout_configs": [{}]}])
    second = Timeline(config(change["route"], receivers))
    second.notifier.restore(stored)
    assert second.step(T0 + 10 * M) == []
    out = second.step(T0 + 16 * M, resolve(T0 + 12 * M, host="a"))
    assert [(n.status, [a.status for a in n.alerts]) for n in out] == [("resolved", ["resolved"])]
    assert second.step(T0 + 6 * 60 * M) == []  # and nothing repeats afterwards
