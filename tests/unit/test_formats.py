"""Input formats (sources/formats.py): the logfmt parser, auto detection, text timing, and their config."""

from __future__ import annotations

import orjson
import pydantic
import pytest

from streamalert.sources.formats import LineFormat, parse_logfmt
from streamalert.sources.kafka_config import KafkaConfig
from streamalert.sources.vector_config import VectorHttpConfig


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        (
            'level=error msg="smtp down" error_type=Timeout',
            [("level", "error"), ("msg", "smtp down"), ("error_type", "Timeout")],
        ),
        ('a="x\\"y" b= c', [("a", 'x"y'), ("b", ""), ("c", None)]),  # escapes; `b=` empty; bare key
        ("  k=v\tn=1  ", [("k", "v"), ("n", "1")]),  # any whitespace separates
        ('path="/a b/ü" k=ü', [("path", "/a b/ü"), ("k", "ü")]),
        ("", []),
    ],
)
def test_logfmt_pairs(text: str, pairs: list[tuple[str, str | None]]) -> None:
    """Keys, bare and quoted values, escapes and bare keys as Loki's logfmt decoder reads them."""
    assert parse_logfmt(text) == pairs


@pytest.mark.parametrize("text", ['a="unterminated', "=v", "a=b=c", 'a=x"y', 'k"ey=v', 'a="\\q"'])
def test_logfmt_refuses_broken_lines(text: str) -> None:
    """An unterminated quote, an empty key, `=` or `"` inside a bare value or a key, a bad escape: not logfmt."""
    assert parse_logfmt(text) is None


def _records(kind: str, lines: list[bytes], stamp: int | None = None, pattern: str | None = None) -> list[object]:
    out = LineFormat(kind, pattern).convert(lines, stamp)  # type: ignore[arg-type]
    return [orjson.loads(line) if line else None for line in out]


def test_json_lines_pass_untouched() -> None:
    """format json returns the very list it got: JSON input pays nothing."""
    lines = [b'{"a": 1}', b"level=error"]
    assert LineFormat("json").convert(lines) is lines


def test_auto_tells_json_logfmt_and_text_apart() -> None:
    """A `{` line stays JSON (even broken), key=value pairs are logfmt, anything else is text with its line."""
    lines = [b'{"level": "error"}', b'{"broken', b"level=error msg=down", b"Starting worker", b"x=1 y"]
    out = LineFormat("auto").convert(lines)
    assert out[:2] == lines[:2]
    assert orjson.loads(out[2]) == {"level": "error", "msg": "down", "_line": "level=error msg=down"}
    assert orjson.loads(out[3]) == {"message": "Starting worker", "_line": "Starting worker"}
    assert orjson.loads(out[4]) == {"message": "x=1 y", "_line": "x=1 y"}  # a bare key: not all pairs


def test_explicit_formats() -> None:
    """logfmt keeps bare keys and leaves a non-logfmt line for the engine to count; text takes every line whole."""
    assert _records("logfmt", [b"a=1 flag"])[0] == {"a": "1", "flag": "", "_line": "a=1 flag"}
    assert LineFormat("logfmt").convert([b'a="open']) == [b'a="open']  # malformed downstream, not lost silently
    assert _records("text", [b"a=1 b=2"]) == [{"message": "a=1 b=2", "_line": "a=1 b=2"}]
    assert LineFormat("text").convert([b""]) == [b""]  # an empty line stays malformed, as in JSON input


def test_text_time_from_the_leading_timestamp_else_the_arrival() -> None:
    """Celery's `[2026-01-26 09:00:00,123: ...` and ISO heads give the time; other lines take the stamp, counted."""
    form = LineFormat("text")
    out = form.convert(
        [b"[2026-01-26 09:00:00,123: INFO/MainProcess] beat: Starting...", b"2026-01-26T09:00:01+01:00 x", b"no time"],
        1_769_418_000_000,
    )
    times = [orjson.loads(line).get("timestamp") for line in out]
    assert times == ["2026-01-26T09:00:00.123Z", "2026-01-26T08:00:01.000Z", "2026-01-26T09:00:00.000Z"]
    assert form.arrived == 1
    assert "timestamp" not in _records("text", [b"no time"])[0]  # type: ignore[operator]  # replay: the engine's


def test_a_configured_time_pattern() -> None:
    """`time_pattern` reads another leading spelling; logfmt lines keep their own `ts` and are not stamped."""
    pattern = r"^(?P<time>\d+\.\d+) "
    assert _records("auto", [b"1769418000.5 beat died"], pattern=pattern)[0] == {
        "message": "1769418000.5 beat died",
        "_line": "1769418000.5 beat died",
        "timestamp": "2026-01-26T09:00:00.500Z",
    }
    form = LineFormat("auto")
    assert orjson.loads(form.convert([b"ts=2026-01-26T09:00:00Z a=1"], 5)[0])["ts"] == "2026-01-26T09:00:00Z"
    assert form.arrived == 0


@pytest.mark.parametrize("model", [VectorHttpConfig, KafkaConfig])
def test_source_config_checks_format_and_pattern(model: type[pydantic.BaseModel]) -> None:
    """An unknown format or a time_pattern without a `time` group is refused when the config loads."""
    base = {"auth": "none"} if model is VectorHttpConfig else {"brokers": ["127.0.0.1:9092"], "topics": ["t"]}
    assert model.model_validate({**base, "format": "auto"}).format == "auto"  # type: ignore[attr-defined]
    with pytest.raises(pydantic.ValidationError, match="format"):
        model.model_validate({**base, "format": "xml"})
    with pytest.raises(pydantic.ValidationError, match="group named `time`"):
        model.model_validate({**base, "time_pattern": r"^\S+"})


def test_text_that_is_not_utf8_still_becomes_a_record() -> None:
    """A Latin-1 byte in a text line is replaced, not a reason to drop the line."""
    (record,) = _records("text", [b"caf\xe9 down"])
    assert record == {"message": "caf\ufffd down", "_line": "caf\ufffd down"}
