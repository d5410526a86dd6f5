"""Many `contains` and `regex` tests on one string in one pass, with RE2's semantics and linear time.

The engine is google-re2's `re2.Set` (RE2::Set, already a dependency): every pattern of a field goes into
one set (or a few, see CHUNK), and one DFA pass over the value's UTF-8 bytes says which of them occur.
Measured against hyperscan (PyPI wheel `hyperscan` 0.9.1, which installs here) on bench/rules_bench.py's
message patterns (bench/README.md has the table): hyperscan scans between as fast and 2x faster, but takes
12-31 s to build 4,000 patterns (RE2: 0.15-0.4 s) at every start, and it speaks PCRE, not RE2: `$` also matches
before a final newline, `\\pL` needs a flag, and so on, so a rule would not mean what the README's Matchers
table says. The RE2 sets already keep matching flat in the number of rules. So: RE2 sets, no new dependency.

What RE2::Set does not give is kept by running patterns alone, with their reference closures:
- a pattern a set refuses to add is tested alone on every value (none known; the fallback is cheap insurance);
- a set whose DFA runs out of memory reports no match at all rather than failing: every set holds the
  empty pattern as a canary at index 0, which matches every string, so an answer without it means "the
  DFA gave up": that set's patterns are tested alone on this value, and the set is split in two;
- a string that is not valid UTF-8 (lone surrogates: msgspec never produces them) is tested alone too.
"""

from __future__ import annotations

from collections.abc import Sequence

import re2

from streamalert.rules.matchers import ValueTest

# Patterns per RE2 set. One set is fastest (one DFA pass per value, measured in bench/README.md), but a
# DFA's states are sets of pattern positions, so a set of many patterns with shared prefixes can exhaust
# its memory budget on some value: a set that gives up is split in two (and the value is answered by the
# patterns alone), so the sets settle at the size the input allows.
CHUNK = 4096


def literal_pattern(needle: str) -> str:
    """An RE2 pattern that matches exactly the substring `needle` (a `contains` test)."""
    return "".join(ch if ch.isalnum() or ord(ch) > 0x7F else f"\\x{{{ord(ch):02x}}}" for ch in needle)


class PatternSet:
    """Which of many patterns (RE2 syntax, search semantics) occur in a string."""

    def __init__(self, patterns: Sequence[str], fallbacks: Sequence[ValueTest], max_mem: int | None = None) -> None:
        """`fallbacks[k]` is the reference test of `patterns[k]`, run when the sets cannot answer.

        `max_mem` is each set's RE2 memory budget (default RE2's, 8 MiB; tests shrink it to make sets fail).
        """
        self.max_mem = max_mem
        self.patterns = list(patterns)
        self.fallbacks = list(fallbacks)
        self.chunks: list[tuple[re2.Set, list[int]]] = []  # (set, global index of each member; -1 the canary)
        self.alone: list[int] = []  # patterns no set would take
        members = list(range(len(self.patterns)))
        for start in range(0, len(members), CHUNK):
            self._build(members[start : start + CHUNK])

    def _build(self, members: list[int]) -> None:
        options = re2.Options()
        options.log_errors = False
        if self.max_mem is not None:
            options.max_mem = self.max_mem
        chunk = re2.Set.SearchSet(options)
        chunk.Add("")  # the canary, see the module docstring
        taken = [-1]
        for index in members:
            try:
                chunk.Add(self.patterns[index])
            except re2.error:
                self.alone.append(index)
                continue
            taken.append(index)
        if len(taken) == 1:
            return
        try:
            chunk.Compile()
        except re2.error:  # too big to compile as one set: two halves
            self._split(taken[1:])
            return
        self.chunks.append((chunk, taken))

    def _split(self, members: list[int]) -> None:
        if len(members) == 1:
            self.alone += members
            return
        half = len(members) // 2
        self._build(members[:half])
        self._build(members[half:])

    def matches(self, text: str) -> list[int]:
        """Indexes of the patterns that occur in `text` (each once, in no particular order)."""
        found: list[int] = []
        try:
            data = text.encode()
        except UnicodeEncodeError:
            return [k for k, test in enumerate(self.fallbacks) if test(text)]
        failed: list[tuple[re2.Set, list[int]]] = []
        for chunk, members in self.chunks:
            hits = chunk.Match(data)
            if hits is None:  # no canary: the DFA gave up on this value; its patterns answer alone
                failed.append((chunk, members))
                found += [k for k in members[1:] if self.fallbacks[k](text)]
            else:
                found += [members[k] for k in hits if k]
        if self.alone:
            found += [k for k in self.alone if self.fallbacks[k](text)]
        for chunk, members in failed:  # after `alone` ran: a split may add to it
            self.chunks.remove((chunk, members))
            self._split(members[1:])
        return found
