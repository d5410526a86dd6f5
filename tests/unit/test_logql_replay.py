"""Translated Loki rules run in the real engine: a replay gives the transitions Loki's semantics predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamalert.cli import main
from streamalert.rules.logql import load_loki_rules

LOKI = """
groups:
  - name: api
    rules:
      - alert: ServerErrors
        expr: sum by (host) (count_over_time({service="api"} | status >= 500 [1m])) > 2
      - alert: Bytes
        expr: sum(rate({service="api"} | json | unwrap bytes [1m])) > 10
      - alert: RouteExact
        expr: sum(count_over_time({service="api"} | route=~"/api" [1m])) > 0
      - alert: BeatSilent
        expr: absent_over_time({container="beat"}[1m])
        for: 30s
"""

# (second, fields): host a has three 5xx within a minute, host b two; bytes sum to 600 (rate exactly 10,
# not above) until the third record; only the record at 40 has a route that matches `/api` whole.
EVENTS: list[tuple[int, dict[str, Any]]] = [
    (0, {"container": "beat"}),
    (0, {"service": "api", "host": "a", "status": 500, "bytes": 300, "route": "/api/x"}),
    (0, {"service": "api", "host": "b", "status": "502"}),
    (5, {"service": "api", "host": "a", "status": 503}),
    (10, {"service": "api", "host": "b", "status": 200}),
    (10, {"service": "api", "host": "a", "status": 504}),
    (15, {"service": "api", "host": "b", "status": 500, "bytes": 300}),
    (30, {"service": "api", "host": "c", "status": 200, "bytes": 1}),
    (40, {"service": "api", "host": "c", "status": 200, "route": "/api"}),
    (100, {"service": "api", "host": "c", "status": 200}),
]


def _at(second: int) -> str:
    return f"2026-01-01T00:{second // 60:02d}:{second % 60:02d}.000Z"


def test_translated_rules_replay_as_loki_predicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Per-host counts, exact rate-of-sum threshold, anchored label regex and absent+for fire and resolve as in Loki."""
    loaded = load_loki_rules(LOKI, "loki.yaml")
    assert all(r.translation.loadable for r in loaded)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"rules": [r.rule for r in loaded]}), encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"timestamp": _at(s), **f}) + "\n" for s, f in EVENTS), encoding="utf-8")

    assert main(["replay", str(events), "--rules", str(rules)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(t["at"], t["rule"], t["state"], t["labels"]) for t in out] == [
        (_at(10), "ServerErrors", "firing", {"host": "a"}),  # 3 > 2 at 10; host b never has 3
        (_at(30), "Bytes", "firing", {}),  # 601 > 10/s x 60s; 600 alone was not above
        (_at(40), "RouteExact", "firing", {}),  # "/api/x" at 0 does not match the anchored "/api"
        (_at(60), "ServerErrors", "resolved", {"host": "a"}),  # the 5xx at 0 leaves the window
        (_at(60), "Bytes", "resolved", {}),  # the 300 bytes at 0 leave: 301
        (_at(90), "BeatSilent", "firing", {"container": "beat"}),  # absent over 1m held for 30s: silent 1m30s
        (_at(100), "RouteExact", "resolved", {}),
    ]
