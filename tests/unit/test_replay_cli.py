"""`streamalert replay` fails clearly: unreachable state, reused state, folders, truncated gzip."""

from __future__ import annotations

import gc
import gzip
import io
import sys
from pathlib import Path
from typing import Any

import pytest

from streamalert.cli import main
from streamalert.engine import COLLECTOR_THRESHOLDS
from streamalert.state.stores import redact
from streamalert.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = str(ROOT / "config" / "rules")
INCIDENT = ROOT / "examples" / "incident.jsonl"


def test_unreachable_redis_is_one_line_without_the_password(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A Redis nobody listens on gives exit 1 and a message naming the store, with its password hidden."""
    url = f"redis://ops:hunter2@127.0.0.1:{free_port()}/0"
    assert main(["replay", str(INCIDENT), "--rules", RULES, "--state", url]) == 1
    err = capsys.readouterr().err
    assert "state store redis://***@127.0.0.1:" in err
    assert "hunter2" not in err
    assert "Traceback" not in err


def test_redact_hides_user_and_password() -> None:
    """Credentials never reach a message; URLs without them stay as they are."""
    assert redact("redis://u:p@h:6379/0?namespace=x") == "redis://***@h:6379/0?namespace=x"
    assert redact("redis://:p@h/0") == "redis://***@h/0"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_replay_refuses_to_reuse_state_unless_told(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A second replay into the same namespace would count lines twice: it needs --reset-state or --resume."""
    state = f"{redis_url}?namespace=cli-reuse"
    args = ["replay", str(INCIDENT), "--rules", RULES, "--state", state]
    assert main([*args, "--reset-state"]) == 0
    first = capsys.readouterr().out
    assert main(args) == 2
    assert "--reset-state to start over, or --resume" in capsys.readouterr().err
    assert main([*args, "--reset-state"]) == 0
    assert capsys.readouterr().out == first


def test_folder_as_input_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Giving a folder instead of files says so, with exit 2."""
    assert main(["replay", str(tmp_path), "--rules", RULES]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_truncated_gzip_keeps_what_was_read_and_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A gzip cut short replays the lines before the cut, reports the file, and exits 1."""
    whole = gzip.compress(INCIDENT.read_bytes())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert main(["replay", str(cut), "--rules", RULES]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("\n") > 0  # transitions from the first half
    assert f"input problem: {cut}: unreadable after" in captured.err


def test_replay_runs_with_the_engines_collector_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """`replay` runs at the engine's collector thresholds (engine.COLLECTOR_THRESHOLDS), with full passes
    freezing what they find (telemetry/memory.py): its output is written while they are set; the caller gets
    its own thresholds and collector callbacks back."""
    before, callbacks = gc.get_threshold(), list(gc.callbacks)
    seen: list[tuple[int, int, int]] = []

    class Output(io.BytesIO):  # what replay's writers write to: sys.stdout.buffer
        def write(self, data: Any) -> int:
            seen.append(gc.get_threshold())
            return super().write(data)

    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(Output()))
    assert main(["replay", str(INCIDENT), "--rules", RULES]) == 0
    assert seen  # it wrote transitions
    assert set(seen) == {COLLECTOR_THRESHOLDS}
    assert before != COLLECTOR_THRESHOLDS
    assert gc.get_threshold() == before
    assert gc.callbacks == callbacks


def test_a_stored_series_it_cannot_read_is_one_line_naming_rule_and_series(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resume over state that this version did not write (here one series value replaced): exit 1 and a
    message naming the store, the rule and the series, not a traceback."""
    import redis  # noqa: PLC0415

    state = f"{redis_url}?namespace=cli-corrupt"
    args = ["replay", str(INCIDENT), "--rules", RULES, "--state", state]
    assert main([*args, "--reset-state"]) == 0
    capsys.readouterr()
    client = redis.Redis.from_url(redis_url)
    try:
        table = next(key for key in sorted(client.scan_iter("*cli-corrupt*:series:*")) if client.hlen(key))
        field = min(key for key in client.hkeys(table) if key[:1] != b"\0")  # a series, not a part of one
        client.hset(table, field, b'{"not": "a series"}')
    finally:
        client.close()
    assert main([*args, "--resume"]) == 1
    err = capsys.readouterr().err
    rule = table.decode().rsplit(":series:", 1)[1].split(":")[0]
    assert f"state store {state}: rule {rule!r}: stored series {field!r} cannot be read (" in err
    assert "Traceback" not in err
