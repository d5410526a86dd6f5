"""Expected against got: which transitions (and notifications) match, and a readable diff when they do not.

The diff lists, in time order, every transition of the rules in the test's scope: ` ` matched, `-` expected
and missing, `+` got and not expected; columns are aligned, times are offsets from the test's start. A got
row shows the labels that tell its series apart (the rule's fixed labels left out) and whatever keys the
expectations name, so the two sides of a near miss read side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from streamalert.config.rules import Rule
from streamalert.durations import format_duration
from streamalert.model import Transition
from streamalert.notify.model import Notification
from streamalert.rules.template import format_value
from streamalert.ruletest.spec import Case, Expected, ExpectedNote

E = TypeVar("E")
G = TypeVar("G")
Row = tuple[int, str, str, list[str]]  # (time, sort key within the instant, sign, cells)
_SIGN_ORDER = {" ": 0, "-": 1, "+": 2}


def offset(ms: int, start: int) -> str:
    """A time as the test writes it: +1m30s after the start (or -5s before it)."""
    delta = ms - start
    return ("+" if delta >= 0 else "-") + format_duration(abs(delta))


def pair(
    expected: Sequence[E], got: Sequence[G], fits: Callable[[E, G], bool], weight: Callable[[E], int]
) -> tuple[list[tuple[E, G]], list[E], list[G]]:
    """Match each got item with one expectation it fits (the most specific one first, so a loose expectation
    does not take the item a specific one needs); return the pairs and what is left on each side."""
    left = list(range(len(expected)))
    pairs: list[tuple[E, G]] = []
    extra: list[G] = []
    for item in got:
        fitting = [i for i in left if fits(expected[i], item)]
        if fitting:
            best = max(fitting, key=lambda i: weight(expected[i]))
            left.remove(best)
            pairs.append((expected[best], item))
        else:
            extra.append(item)
    return pairs, [expected[i] for i in left], extra


def _subset(wanted: dict[str, str] | None, have: dict[str, str]) -> bool:
    return wanted is None or all(have.get(k) == v for k, v in wanted.items())


def _fits(e: Expected, t: Transition) -> bool:
    return (
        e.at_ms == t.at_ms
        and e.rule == t.rule
        and e.state == t.state.value
        and _subset(e.labels, dict(t.labels))
        and _subset(e.annotations, dict(t.annotations))
        and (e.value is None or _same_value(e.value, t.value))
    )


def _same_value(wanted: float, got: float | int) -> bool:
    """Equal, or equal as printed (what replay and the diff show: 0.183333 for 55/300), so a value copied
    from the output matches."""
    return math.isclose(wanted, got, rel_tol=1e-9, abs_tol=1e-12) or format_value(wanted) == format_value(got)


def _weight(e: Expected) -> int:
    return len(e.labels or ()) + len(e.annotations or ()) + (e.value is not None)


def _pairs_text(items: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(items.items())) + "}" if items else ""


def transition_diff(case: Case, rules: list[Rule], got: list[Transition]) -> list[str] | None:
    """None when the transitions of the rules in scope are exactly the expected ones; else the diff lines."""
    scoped = [t for t in got if case.scope is None or t.rule in case.scope]
    pairs, missing, extra = pair(case.expected, scoped, _fits, _weight)
    if not missing and not extra:
        return None
    fixed = {rule.name: {k for k, _ in rule.labels} for rule in rules}
    named_labels: dict[str, set[str]] = {}
    named_notes: dict[str, set[str]] = {}
    for e in case.expected:
        named_labels.setdefault(e.rule, set()).update(e.labels or ())
        named_notes.setdefault(e.rule, set()).update(e.annotations or ())

    def got_cells(t: Transition) -> list[str]:
        shown = named_labels.get(t.rule, set())
        labels = {k: v for k, v in t.labels if k in shown or k not in fixed.get(t.rule, set())}
        notes = {k: v for k, v in t.annotations if k in named_notes.get(t.rule, set())}
        at = offset(t.at_ms, case.start_ms)
        return [at, t.state.value, t.rule, _pairs_text(labels), _value(t.value), _pairs_text(notes)]

    def expected_cells(e: Expected) -> list[str]:
        value = _value(e.value) if e.value is not None else ""
        labels = _pairs_text(e.labels or {})
        return [offset(e.at_ms, case.start_ms), e.state, e.rule, labels, value, _pairs_text(e.annotations or {})]

    rows: list[Row] = [(t.at_ms, t.rule, " ", got_cells(t)) for _, t in pairs]
    rows += [(e.at_ms, e.rule, "-", expected_cells(e)) for e in missing]
    rows += [(t.at_ms, t.rule, "+", got_cells(t)) for t in extra]
    scope = "every rule" if case.scope is None else ", ".join(sorted(case.scope))
    head = f"transitions of {scope} (- expected, + got; times after start {_iso(case.start_ms)}):"
    return [head, *_table(rows)]


def _value(value: float | int) -> str:
    return f"value={format_value(value)}"


def _iso(ms: int) -> str:
    from streamalert.decode import format_ms  # noqa: PLC0415 (kept next to its one use)

    return format_ms(ms)


def _table(rows: list[Row]) -> list[str]:
    rows.sort(key=lambda r: (r[0], r[1], _SIGN_ORDER[r[2]]))
    widths = [max(len(r[3][c]) for r in rows) for c in range(len(rows[0][3]))]
    out = []
    for _, _, sign, cells in rows:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True) if width]
        out.append(f"  {sign} " + "  ".join(padded).rstrip())
    return out


# ---- notifications -----------------------------------------------------------------------------------------

# A notification as compared: the same content sent through several sinks of a receiver is one entry
Note = tuple[int, str, str, tuple[dict[str, str], ...], list[str]]  # (at, receiver, status, alerts' labels, sinks)


def collapse(notifications: list[Notification]) -> list[Note]:
    """One entry per decided notification, with the sinks it went to, in the order they were decided."""
    from streamalert.decode import parse_time  # noqa: PLC0415

    out: dict[tuple[str, str, str, str, str], Note] = {}
    for n in notifications:
        at = parse_time(n.at) or 0
        alerts = tuple(dict(a.labels) for a in n.alerts)
        key = (n.at, n.receiver, n.group_key, n.status, repr(sorted(sorted(a.items()) for a in alerts)))
        if key in out:
            out[key][4].append(n.sink)
        else:
            out[key] = (at, n.receiver, n.status, alerts, [n.sink])
    return list(out.values())


def _alerts_fit(wanted: list[dict[str, str]], have: tuple[dict[str, str], ...]) -> bool:
    if len(wanted) != len(have):
        return False
    _, missing, extra = pair(wanted, have, _subset, len)
    return not missing and not extra


def _note_fits(e: ExpectedNote, n: Note) -> bool:
    at, receiver, status, alerts, sinks = n
    return (
        e.at_ms == at
        and e.receiver == receiver
        and e.status == status
        and (e.sinks is None or sorted(e.sinks) == sorted(sinks))
        and _alerts_fit(e.alerts, alerts)
    )


def notification_diff(case: Case, rules: list[Rule], got: list[Notification]) -> list[str] | None:
    """None when the notifications are exactly the expected ones; else the diff lines."""
    expected = case.notifications or []
    notes = collapse(got)
    pairs, missing, extra = pair(expected, notes, _note_fits, lambda e: sum(len(a) for a in e.alerts))
    if not missing and not extra:
        return None
    fixed = {rule.name: {k for k, _ in rule.labels} for rule in rules}
    named = {k for e in expected for alert in e.alerts for k in alert}

    def alert_text(labels: dict[str, str], got_side: bool) -> str:
        name = labels.get("alertname", "")
        keep = {
            k: v
            for k, v in labels.items()
            if k != "alertname" and (not got_side or k in named or k not in fixed.get(name, set()))
        }
        return name + _pairs_text(keep)

    def got_cells(n: Note) -> list[str]:
        at, receiver, status, alerts, sinks = n
        listed = ", ".join(sorted(alert_text(a, True) for a in alerts))
        return [offset(at, case.start_ms), status, receiver, f"[{listed}]", f"sinks={','.join(sorted(sinks))}"]

    def expected_cells(e: ExpectedNote) -> list[str]:
        listed = ", ".join(sorted(alert_text(a, False) for a in e.alerts))
        sinks = f"sinks={','.join(sorted(e.sinks))}" if e.sinks is not None else ""
        return [offset(e.at_ms, case.start_ms), e.status, e.receiver, f"[{listed}]", sinks]

    rows: list[Row] = [(n[0], n[1], " ", got_cells(n)) for _, n in pairs]
    rows += [(e.at_ms, e.receiver, "-", expected_cells(e)) for e in missing]
    rows += [(n[0], n[1], "+", got_cells(n)) for n in extra]
    return ["notifications (- expected, + got):", *_table(rows)]


def clock_note(case: Case, end_ms: int | None) -> str | None:
    """Why expectations after the end of the clock can never be met, when the test has some."""
    times = [e.at_ms for e in case.expected] + [n.at_ms for n in case.notifications or []]
    if not times:
        return None
    if end_ms is None:
        return "note: no input and no `until`: the clock never ran (give `until:` for absence rules)"
    if max(times) > end_ms:
        what = "`until`" if case.until_ms is not None else "the last input line"
        return (
            f"note: the clock stopped at {offset(end_ms, case.start_ms)} ({what}): expectations after it "
            "cannot be met; give a later `until:`"
        )
    return None
