"""Stored groups under a changed route tree (a config reload or a restart with new routes), in event time:
each alert ends up where the new tree routes it, with what was already sent and its group's due time."""

from __future__ import annotations

from streamalert.notify.model import Notification

from .test_dispatch_timelines import ROUTE, T0, S, Timeline, at, config, fire, resolve, summary

RECEIVERS = [{"name": "team", "stdout_configs": [{}]}, {"name": "db", "stdout_configs": [{}]}]
DB_ROUTE: dict[str, object] = {"receiver": "db", "matchers": ['team="db"']}


def _reloaded(first: Timeline, routes: list[dict[str, object]]) -> Timeline:
    """A second notifier with `routes` under the root, from what the first one's checkpoints stored."""
    stored = {gid.encode(): group.dump() for gid, group in first.notifier.dispatch.groups.items()}
    second = Timeline(config({**ROUTE, "routes": routes}, RECEIVERS))
    second.notifier.restore(stored)
    return second


def _receivers(notes: list[Notification]) -> list[tuple[str, str]]:
    return [(n.receiver, a.name) for n in notes for a in n.alerts]


def test_a_pending_group_moves_to_a_route_added_before_it_and_keeps_its_due_time() -> None:
    """A group in group_wait under the root, when a child route for its alerts appears, is flushed once by
    the child's receiver at the time it was due (the route it was in decided its group_wait)."""
    first = Timeline(config(ROUTE, RECEIVERS))
    assert first.step(T0 + 10 * S, fire(T0, team="db"), fire(T0, rule="other", team="web")) == []
    second = _reloaded(first, [DB_ROUTE])
    assert second.step(T0 + 30 * S) == []  # due at T0 + 30 s: not before
    out = second.step(T0 + 31 * S)
    assert _receivers(out) == [("db", "db_errors"), ("team", "other")]
    assert {n.at for n in out} == {at(T0 + 30 * S)}
    assert second.step(T0 + 40 * 60 * S) == []  # sent once: no second first notification


def test_an_alert_already_sent_is_not_paged_again_after_its_route_moves() -> None:
    """The root already notified the alert; under the new child route it is not sent again until it
    resolves (the resolve still reaches the new receiver)."""
    first = Timeline(config(ROUTE, RECEIVERS))
    assert summary(first.step(T0 + 31 * S, fire(T0, team="db"))) == [
        (at(T0 + 30 * S), "team", "firing", ["db_errors::firing"])
    ]
    second = _reloaded(first, [DB_ROUTE])
    assert second.step(T0 + 20 * 60 * S) == []
    out = second.step(T0 + 30 * 60 * S, resolve(T0 + 21 * 60 * S, team="db"))
    assert [(n.receiver, n.status) for n in out] == [("db", "resolved")]
