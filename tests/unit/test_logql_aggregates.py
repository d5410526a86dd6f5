"""LogQL's bytes_over_time, first/last_over_time, unwrap duration()/bytes() and `without (...)`: conditions,
translations, refusals, series that checkpoint exactly, and the engine's transitions to the millisecond."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from streamalert.cli import main
from streamalert.rules.condition import parse_condition
from streamalert.rules.kinds_edge import ConvertedSeries, EdgeSeries
from streamalert.rules.logql import LogQLError, translate


@pytest.mark.parametrize(
    ("text", "aggregate", "field", "unit"),
    [
        ("bytes > 10", "bytes", None, ""),
        ("first(v) > 1", "first", "v", ""),
        ("last(duration(took)) >= 2", "last", "took", "duration"),
        ("sum(bytes(size)) > 5", "sum", "size", "bytes"),
        ("avg( duration_seconds( t ) ) < 1", "avg", "t", "duration_seconds"),
    ],
)
def test_new_conditions_parse(text: str, aggregate: str, field: str | None, unit: str) -> None:
    """bytes, first(F), last(F) and converted fields parse into aggregate, field and unit; all are kinds."""
    condition = parse_condition(text)
    assert (condition.aggregate, condition.field, condition.unit, condition.kind) == (aggregate, field, unit, True)


@pytest.mark.parametrize(
    ("text", "hint"),
    [("bytes(x) > 3", "bytes takes no field"), ("distinct(duration(x)) > 1", "distinct takes no duration(FIELD)")],
)
def test_misused_new_conditions_say_why(text: str, hint: str) -> None:
    """A field on bytes or a conversion where it means nothing is refused with the reason."""
    with pytest.raises(ValueError, match=re.escape(hint)):
        parse_condition(text)


def test_without_groups_by_the_selector_and_parser_labels_but_those() -> None:
    """`without (pod)` keeps the selector's and the regexp's labels; the unwrapped label leaves the series too."""
    done = translate(
        'sum without (pod) (count_over_time({app="api", pod=~".+"} | regexp "(?P<route>/[a-z]+)" [1m])) > 1'
    )
    assert done.rule["group_by"] == ["app", "route"]
    assert any("exact only if the selector names all the stream labels" in note for note in done.notes)
    done = translate(
        'max without () (max_over_time({app="api"} | pattern "<_> took <took>" | unwrap duration(took) [1m])) > 1'
    )
    assert (done.rule["group_by"], done.rule["condition"]) == (["app"], "max(duration(took)) > 1")
    assert done.loadable


def test_without_after_an_open_parser_is_refused_at_its_position() -> None:
    """After `| logfmt` every field is a label: `without` is refused, pointing at the grouping."""
    with pytest.raises(LogQLError, match=r"after `\| logfmt`") as info:
        translate('sum without (pod) (count_over_time({app="api"} | logfmt [1m])) > 1')
    assert (info.value.line, info.value.column) == (1, 5)


def test_edge_and_converted_series_rebuild_exactly() -> None:
    """first/last (ties in one millisecond: smallest first, largest last) and converted sums survive dump/load."""
    edge = EdgeSeries()
    for now, sample in [(10, 6), (10, 4), (20, 1), (20, 2)]:
        edge.observe(now, sample)
    first, last = parse_condition("first(v) > 3"), parse_condition("last(v) > 3")
    assert (edge.measure(first), edge.measure(last)) == ((4, True), (2, False))
    again = EdgeSeries.load(edge.dump())
    again.evict(70, 60)  # (10, 70] drops the millisecond 10
    assert again.measure(first) == (1, False)
    summed = ConvertedSeries()
    summed.observe(5, 1.5)
    summed.observe(6, 2.5)
    assert ConvertedSeries.load(summed.dump()).measure(parse_condition("sum(duration(t)) > 3")) == (4, True)


# (ms, pod, v, took, size)
EVENTS: list[tuple[int, str, int, str, str]] = [
    (1_000, "p1", 7, "1.5s", "512KiB"),
    (2_500, "p2", 1, "2500ms", "1MB"),
    (30_000, "p1", 3, "bad", "12"),  # `bad` is no duration: no sample for the duration sum (Loki: __error__)
    (120_000, "p1", 9, "1s", "1"),
]


def _at(ms: int) -> str:
    return f"2026-01-01T00:{ms // 60_000:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}Z"


def _line(ms: int, pod: str, v: int, took: str, size: str) -> str:
    fields: dict[str, Any] = {"timestamp": _at(ms), "app": "api", "pod": pod, "v": v, "took": took, "size": size}
    return json.dumps(fields)


def test_new_aggregates_fire_and_resolve_at_loki_times(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """bytes, first, last, duration() and bytes() unwraps and without(pod): each transition at its millisecond."""
    lines = [_line(*event) for event in EVENTS]
    three = sum(len(line.encode()) for line in lines[:3])  # the bytes of the first three lines
    rules = tmp_path / "loki.yaml"
    rules.write_text(
        f"""groups:
  - name: g
    rules:
      - alert: Bytes
        expr: sum(bytes_over_time({{app="api"}}[1m])) > {three - 1}
      - alert: First
        expr: first_over_time({{app="api"}} | unwrap v [1m]) by (app) > 5
      - alert: Last
        expr: last_over_time({{app="api"}} | unwrap v [1m]) by (app) < 2
      - alert: Dur
        expr: sum(sum_over_time({{app="api"}} | unwrap duration(took) [1m])) > 3
      - alert: Size
        expr: max(max_over_time({{app="api"}} | unwrap bytes(size) [1m])) >= 1000000
      - alert: Without
        expr: sum without (pod) (count_over_time({{app="api", pod=~".+"}}[1m])) > 1
""",
        encoding="utf-8",
    )
    events = tmp_path / "events.jsonl"
    events.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    assert main(["replay", str(events), "--rules", str(rules)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    api = {"app": "api"}
    assert [(t["at"], t["rule"], t["state"], t["labels"]) for t in out] == [
        (_at(1_000), "First", "firing", api),  # first sample 7 > 5
        (_at(2_500), "Last", "firing", api),  # last sample 1 < 2
        (_at(2_500), "Dur", "firing", {}),  # 1.5 s + 2.5 s = 4 s > 3
        (_at(2_500), "Size", "firing", {}),  # 1MB = 1,000,000 bytes (go-humanize: SI)
        (_at(2_500), "Without", "firing", api),  # one line of each pod, summed without pod: 2 > 1
        (_at(30_000), "Bytes", "firing", {}),  # three lines' bytes in the minute
        (_at(30_000), "Last", "resolved", api),  # last sample 3
        (_at(61_000), "Bytes", "resolved", {}),  # the first line leaves the window
        (_at(61_000), "First", "resolved", api),  # first sample now 1
        (_at(61_000), "Dur", "resolved", {}),  # 2.5 s left
        (_at(62_500), "Size", "resolved", {}),  # max is 12 bytes
        (_at(62_500), "Without", "resolved", api),  # one line left
        (_at(120_000), "First", "firing", api),  # a new window: first sample 9
    ]


@pytest.mark.parametrize("order", [(1, 9), (9, 1)])
def test_first_and_last_do_not_depend_on_arrival_within_a_millisecond(
    order: tuple[int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two samples of one millisecond in either arrival order: first is the smaller, last the larger (the
    engine applies one millisecond's lines in byte order, which here puts the larger sample first)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - {name: First, match: {app: api}, window: 1m, condition: first(v) < 5}\n"
        "  - {name: Last, match: {app: api}, window: 1m, condition: last(v) > 5}\n",
        encoding="utf-8",
    )
    events = tmp_path / "events.jsonl"
    tag = {9: "a", 1: "b"}  # the line of 9 sorts first
    events.write_text(
        "".join(json.dumps({"timestamp": _at(500), "app": "api", "k": tag[v], "v": v}) + "\n" for v in order),
        encoding="utf-8",
    )
    assert main(["replay", str(events), "--rules", str(rules)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(t["at"], t["rule"], t["state"], t["value"]) for t in out] == [
        (_at(500), "First", "firing", 1),
        (_at(500), "Last", "firing", 9),
    ]
