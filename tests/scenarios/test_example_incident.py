"""The bundled incident replays to the committed, hand-checked transitions on both backends."""

from __future__ import annotations

from pathlib import Path

from streamalert.config.rules import load_rules
from streamalert.engine import Engine
from streamalert.output import transition_json
from streamalert.pipeline import run
from streamalert.sources.replay import ReplaySource
from streamalert.state.base import Store
from streamalert.testing import CapturingSink

ROOT = Path(__file__).resolve().parents[2]


async def test_incident_replays_to_expected_transitions(store: Store) -> None:
    """Every rule of the shipped pack fires on the example incident exactly as examples/README.md computes."""
    rules = load_rules(ROOT / "config" / "rules")
    sink = CapturingSink()
    source = ReplaySource([ROOT / "examples" / "incident.jsonl"], batch_lines=500)
    summary = await run(Engine(rules), source, store, sink)
    got = b"".join(transition_json(t) + b"\n" for t in sink.transitions)
    assert got == (ROOT / "examples" / "expected-transitions.jsonl").read_bytes()
    assert summary.malformed == 3
    assert summary.stats.late == 0
    fired = {t.rule for t in sink.transitions if t.state.value == "firing"}
    assert fired == {rule.name for rule in rules}, "every shipped rule must fire on the example"
