"""Vector bodies split a slice at a time give exactly the lines a whole split gives, and broken arrays salvage."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.sources.vector_body import PIECE, Body


def all_lines(body: bytes, step: int) -> list[bytes]:
    """Every line of a Body, taken `step` at a time (as batches take them)."""
    parsed = Body(body)
    out: list[bytes] = []
    while not parsed.exhausted:
        taken = parsed.take(step)
        assert len(taken) <= step
        out += taken
    return out


def whole_ndjson(body: bytes) -> list[bytes]:
    """The reference: the source's split before slicing (strip one "\\r", drop empty lines)."""
    return [line for line in (raw[:-1] if raw[-1:] == b"\r" else raw for raw in body.split(b"\n")) if line]


# Values Vector events can hold, with the text that trips naive splitting: "},{", "\n", "[", nested objects.
texts = st.text(alphabet=st.sampled_from(list('ab},{[]"\\\n\r é')), max_size=12)
values = st.recursive(
    st.none() | st.integers() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
events = st.dictionaries(texts, values, min_size=1, max_size=4)


def encode(event: object) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=60, deadline=None)
@given(st.lists(events, min_size=0, max_size=40), st.integers(1, 7), st.integers(0, 3))
def test_array_body_gives_every_element_raw_across_pieces(elements: list[object], step: int, pad: int) -> None:
    """A compact array (Vector's body), padded past several pieces, gives each element's bytes in order."""
    filler = [{"f": "x" * (PIECE // 3)} for _ in range(pad)]  # forces cuts in the middle of the body
    items = [encode(e) for e in filler + elements + filler]
    body = b"[" + b",".join(items) + b"]"
    assert all_lines(body, step) == items


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=60), st.sampled_from([b"\n", b"\r\n", b"\n\n"]), st.integers(1, 9))
def test_ndjson_body_matches_a_whole_split(lines: list[bytes], end: bytes, step: int) -> None:
    """NDJSON split in slices (lines longer than a piece included) equals the split of the whole body."""
    # the first line is an object: a body whose first non-blank byte is "[" is a JSON array, not NDJSON
    lines = [b"{}", *(line.replace(b"\n", b" ") for line in lines), b"y" * (PIECE + 5), b"z"]
    body = end.join(lines * 3)
    assert all_lines(body, step) == whole_ndjson(body)


def test_many_tiny_lines_are_split_lazily_in_bounded_slices() -> None:
    """3.5M `{}` lines (10 MB) all come out; the body holds at most one slice of split lines at a time."""
    count = 10 * 1024 * 1024 // 3
    parsed = Body(b"{}\n" * count)
    assert parsed.known_count() is None  # not split whole up front
    total = 0
    while not parsed.exhausted:
        taken = parsed.take(4096)
        assert taken
        assert set(taken) == {b"{}"}
        assert len(parsed._lines) <= PIECE // 3 + 1  # the pending slice, never the whole body
        total += len(taken)
    assert total == count


def test_small_body_count_is_known_at_once() -> None:
    """A body within one piece is split at once, so whole small requests can be merged."""
    assert Body(b'{"a":1}\n\n{"b":2}\n').known_count() == 2
    assert Body(b'[{"a":1},{"b":2}]').known_count() == 2
    assert Body(b" [ ] ").known_count() == 0
    assert Body(b"").exhausted


def test_most_bounds_the_lines_left_without_splitting() -> None:
    """`most` is at least the lines a body still holds (exact once split whole), read off its newlines without
    splitting it; None for an array not split whole, whose element count only decoding tells."""
    lines = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * 90) for i in range(2000)]
    body = Body(b"\n".join(lines[:1000]) + b"\n\n" + b"\n".join(lines[1000:]) + b"\n")  # one blank line
    assert body.known_count() is None
    assert body.most() == 2002  # newlines + 1: an upper bound (a blank line and the end count too)
    assert len(body._lines) < 2000  # asking split nothing more
    first = body.take(500)
    left = body.most()
    assert len(first) == 500
    assert left is not None
    assert left >= 1500
    rest = body.take(5000)
    assert first + rest == lines
    assert body.most() == 0
    assert Body(b'{"a":1}\n{"b":2}').most() == 2  # split whole at once: exact
    assert Body(b"[" + b",".join(lines) + b"]").most() is None
    assert Body(b'[{"a":1},{"b":2}]').most() == 2


def test_broken_array_keeps_every_good_element() -> None:
    """One bad element in an array costs itself only: every good one before and after it is a line, whole."""
    good = [encode({"n": i, "s": "},{" if i % 7 == 0 else "x"}) for i in range(12000)]
    bad = b'{"n":"broken",}'
    body = b"[" + b",".join([*good[:6000], bad, *good[6000:]]) + b"]"
    lines = all_lines(body, 100)
    assert len(body) > 2 * PIECE
    assert lines == [*good[:6000], bad, *good[6000:]]  # "},{" inside strings: parts joined back


def test_truncated_and_non_array_bodies_are_salvaged() -> None:
    """A truncated array keeps its whole elements; text after "[" that is no array at all is one line."""
    assert all_lines(b'[{"a":1},{"b":2},{"c":', 10) == [b'{"a":1}', b'{"b":2}', b'{"c":']
    assert all_lines(b"[not json", 10) == [b"not json"]
    assert all_lines(b'[{"a":[{},{}],"b":"},{"},{"c":}]', 10) == [b'{"a":[{},{}],"b":"},{"}', b'{"c":}']
    assert all_lines(b'[{"a":1}, {"b":]', 10) == [b'{"a":1}, {"b":']  # cut only at "},{", as Vector writes
