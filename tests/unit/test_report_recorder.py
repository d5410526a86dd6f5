"""The replay report's recorder and page: values from the engine, bounded memory, every input text escaped."""

from __future__ import annotations

from pathlib import Path

import orjson

from streamalert.alerts.lifecycle import INACTIVE, Phase
from streamalert.config.rules import Rule, load_rules
from streamalert.engine import Engine
from streamalert.model import AlertState
from streamalert.report import Recorder, render
from streamalert.report.recorder import MAX_POINTS, MAX_SERIES, SeriesTrace

RULES = """
rules:
  - name: errors_by_host
    match: {level: error}
    window: 1m
    condition: count >= 3
    for: 30s
    group_by: [host]
    annotations: {summary: "{{ value }} errors on {{ labels.host }}"}
"""


def _line(second: int, host: str) -> bytes:
    stamp = f"2026-01-26T09:{second // 60:02d}:{second % 60:02d}.000Z"
    return orjson.dumps({"timestamp": stamp, "level": "error", "host": host})


def _rules(tmp_path: Path) -> list[Rule]:
    (tmp_path / "r.yaml").write_text(RULES)
    return load_rules(tmp_path / "r.yaml")


def test_samples_are_the_values_the_engine_decided_on(tmp_path: Path) -> None:
    """Each transition's instant and value are among the samples of its series, with the phase it entered."""
    rules = _rules(tmp_path)
    engine = Engine(rules, lateness_ms=0)
    recorder = Recorder(rules)
    engine.sampler = recorder.sample
    engine.accept_lines([_line(s, "web-1") for s in range(0, 50, 5)])
    engine.finish()
    transitions = engine.drain()
    assert [t.state for t in transitions] == [AlertState.FIRING]
    series = recorder.rules[0].series[("web-1",)]
    firing = transitions[0]
    assert (firing.at_ms, float(firing.value)) in series.points
    assert [state for _, state in series.changes] == ["inactive", "pending", "firing"]
    assert series.changes[2][0] == firing.at_ms
    assert series.points[:2] == [(series.points[0][0], 1.0), (series.points[0][0] + 5000, 2.0)]  # below min_count too


def test_long_series_are_downsampled_to_their_peaks() -> None:
    """However many samples, a series keeps fewer than 2 x MAX_POINTS points, its peak and every phase change."""
    trace = SeriesTrace(("k",))
    for at in range(100_000):
        value = 1000.0 if at == 54_321 else float(at % 7)
        trace.add(at, value, "firing" if 60_000 <= at < 60_010 else "inactive")
    assert len(trace.points) < 2 * MAX_POINTS
    assert max(v for _, v in trace.points) == 1000.0
    assert trace.changes == [(0, "inactive"), (60_000, "firing"), (60_010, "inactive")]
    assert trace.samples == 100_000


def test_groups_beyond_the_cap_are_counted_not_kept(tmp_path: Path) -> None:
    """A rule's recorded series stop at MAX_SERIES inactive ones; later groups are counted for the page."""
    rules = _rules(tmp_path)
    recorder = Recorder(rules)
    for n in range(MAX_SERIES + 25):
        recorder.sample(0, (f"host-{n}",), n, 1.0, INACTIVE)
    recorder.sample(0, ("late-but-firing",), 999, 5.0, Phase(1, True))
    assert len(recorder.rules[0].series) == MAX_SERIES + 1
    assert recorder.rules[0].overflow == 25
    assert "more series not drawn" in render(recorder, "r", ["in.jsonl"])


def test_every_text_from_input_is_escaped(tmp_path: Path) -> None:
    """A group value, file name and annotation full of markup appear as text: no tag of theirs reaches the page."""
    rules = _rules(tmp_path)
    engine = Engine(rules, lateness_ms=0)
    recorder = Recorder(rules)
    engine.sampler = recorder.sample
    host = '<script>alert("x")</script><img src=x onerror=1>'
    engine.accept_lines([_line(s, host) for s in range(0, 50, 5)])
    engine.finish()
    recorder.write(engine.drain())
    page = render(recorder, "<b>title</b>", ["<i>file</i>.jsonl"])
    assert "<script" not in page
    assert "<img" not in page
    assert "<b>title" not in page
    assert "<i>file" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
