"""`replay --report`: the bundled incident's HTML page, rendered by headless Chromium, shows what the engine did."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from streamalert.cli import main
from streamalert.config.rules import load_rules

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "rules"
INCIDENT = ROOT / "examples" / "incident.jsonl"
EXPECTED = [json.loads(line) for line in (ROOT / "examples" / "expected-transitions.jsonl").read_text().splitlines()]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/ensure-packages installs it; CI has it)"
)


class _Dom(HTMLParser):
    """Every element as (tag, attributes, the data-rule of its section), plus the table's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], str | None]] = []
        self.rule: str | None = None
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.rule = attributes.get("data-rule")
        self.elements.append((tag, attributes, self.rule))
        self._in_cell = tag == "td"

    def handle_endtag(self, tag: str) -> None:
        self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells.append(data)

    def of(self, rule: str, tag: str, css: str) -> list[dict[str, str]]:
        return [a for t, a, r in self.elements if r == rule and t == tag and a.get("class") == css]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "incident.html"
    assert main(["replay", str(INCIDENT), "--rules", str(RULES), "--report", str(path), "--no-progress"]) == 0
    return path


@needs_chromium
def test_report_dom_shows_every_rule_mark_and_transition(report: Path, tmp_path: Path) -> None:
    """In Chromium's DOM: a section per rule, a mark per transition, firing/pending/gap bands where they were."""
    dom = _Dom()
    dom.feed(_chromium(tmp_path, "--dump-dom", report.as_uri()).stdout)
    rules = load_rules(RULES)
    sections = [a["data-rule"] for t, a, _ in dom.elements if t == "section" and "data-rule" in a]
    assert sections == [rule.name for rule in rules]
    for rule in rules:
        expected = [t for t in EXPECTED if t["rule"] == rule.name]
        marks = Counter(a["class"] for t, a, r in dom.elements if r == rule.name and t == "polygon")
        assert marks == Counter(f"mark {t['state']}" for t in expected), rule.name
        fired_at = [t["at"] for t in expected if t["state"] == "firing"]
        assert [a["data-from"] for a in dom.of(rule.name, "rect", "firing")] == fired_at, rule.name
        if rule.for_ms:  # pending from when the condition held until it fired (`for` later)
            assert [a["data-to"] for a in dom.of(rule.name, "rect", "pending")] == fired_at, rule.name
        else:
            assert dom.of(rule.name, "rect", "pending") == [], rule.name
    resolved = [t["at"] for t in EXPECTED if t["rule"] == "mailer_celery_beat_down" and t["state"] == "resolved"]
    assert [a["data-to"] for a in dom.of("mailer_celery_beat_down", "rect", "gap")] == resolved
    rows = [(a["data-rule"], a["data-state"]) for t, a, _ in dom.elements if t == "tr" and "data-rule" in a]
    assert sorted(rows) == sorted((t["rule"], t["state"]) for t in EXPECTED)
    assert sorted(set(dom.cells) & {t["at"] for t in EXPECTED}) == sorted({t["at"] for t in EXPECTED})


@needs_chromium
def test_report_renders_to_a_screenshot(report: Path, tmp_path: Path) -> None:
    """Chromium draws the page (no network needed) into a PNG of the asked width."""
    png = tmp_path / "report.png"
    _chromium(tmp_path, "--hide-scrollbars", "--window-size=1280,900", f"--screenshot={png}", report.as_uri())
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 1280  # IHDR width
    assert len(data) > 20_000  # charts and text, not a blank page


def test_report_is_self_contained(report: Path) -> None:
    """No script, no external resource: the page works offline, from a mail attachment or a CI artifact."""
    page = report.read_text()
    for reference in ("<script", "src=", "href=", "@import", "<link"):
        assert reference not in page
    assert page.count("url(") == page.count("url(#")  # only the page's own SVG patterns


def test_report_into_a_missing_folder_is_refused_before_replaying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--report into a folder that does not exist exits 2 at once, naming the path, instead of after the run."""
    target = tmp_path / "no" / "such" / "report.html"
    assert main(["replay", str(INCIDENT), "--rules", str(RULES), "--report", str(target)]) == 2
    captured = capsys.readouterr()
    assert f"--report {target}: no such folder" in captured.err
    assert captured.out == ""
