"""What LogQL's whole-line matching costs: decode + match of the incident's lines, Loki rules against their twins.

Run by hand, never in CI:

    python bench/logql_bench.py [--passes 15] [--rounds 3]

The ten Revel rules as a Loki rule-group file (examples/loki/revel-rules.yaml: line filters on `_line`, the
raw line) and their YAML twins (config/rules/revel.yaml: the same filters on `message`) each compile to the
engine's hot path (`compiled.match(compiled.decode(line))`, what the intake does per line), timed over the
JSON lines of examples/incident.jsonl (x4) in memory. The floor is msgspec decoding the same lines into
dicts, timed in the same pass loop. Each cell is the best of `--passes` passes; the two rule files
alternate for `--rounds` rounds, so a busy machine weighs on both; the table gives each round's ratio
(floor time / hot-path time: 1.0x means matching costs nothing beyond decoding into a dict).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a plain script from a checkout, installed or not

from streamalert.clock import Stopwatch  # noqa: E402
from streamalert.config.rules import load_rules  # noqa: E402
from streamalert.decode import decode_record  # noqa: E402
from streamalert.rules.codegen import compile_rules  # noqa: E402

FILES = {"twins (message)": ROOT / "config/rules/revel.yaml", "loki (_line)": ROOT / "examples/loki/revel-rules.yaml"}
# The Loki file plus one rule with a `| pattern` and one with a `| regexp` (rules/extract.py): the lines their
# selectors admit then run both extractors (rules/codegen.py, the gates).
EXTRACTING = """
      - alert: PatternBench
        expr: |
          sum by (verb) (count_over_time({service="revel"} | pattern `<_>"method": "<verb>"<_>` [1m])) > 5
      - alert: RegexpBench
        expr: |
          sum by (code) (count_over_time({service="revel"} | regexp `"status_code": (?P<code>5[0-9]{2})` [1m])) > 5
"""


def _best(run: Callable[[], None], passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        watch = Stopwatch()
        run()
        best = min(best, watch.elapsed())
    return best


def measure(path: Path, lines: list[bytes], passes: int) -> tuple[float, float]:
    """(hot-path lines/s, floor time / hot-path time) of one rule file, best of `passes`."""
    rules = load_rules(path)
    compiled = compile_rules([rule.match_spec for rule in rules], [rule.extract for rule in rules])
    decode, match = compiled.decode, compiled.match

    def hot() -> None:
        for line in lines:
            match(decode(line))

    def floor() -> None:
        for line in lines:
            decode_record(line)

    hot_s, floor_s = _best(hot, passes), _best(floor, passes)
    return len(lines) / hot_s, floor_s / hot_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--passes", type=int, default=15, help="timed passes per cell, best kept (default 15)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two rule files (default 3)")
    args = parser.parse_args(argv)
    raw = (ROOT / "examples" / "incident.jsonl").read_bytes().splitlines() * 4
    lines = [line for line in raw if line.startswith(b"{") and line.endswith(b"}")]
    print(f"{len(lines)} lines; best of {args.passes} passes; ratio = dict-decode floor time / hot-path time")
    files = dict(FILES)
    with tempfile.TemporaryDirectory() as tmp:
        files["loki + extract"] = Path(tmp) / "extracting.yaml"
        files["loki + extract"].write_text(FILES["loki (_line)"].read_text(encoding="utf-8") + EXTRACTING)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in files}
        for _ in range(args.rounds):
            for name, path in files.items():
                results[name].append(measure(path, lines, args.passes))
    for name, cells in results.items():
        rates = ", ".join(f"{lps:,.0f}" for lps, _ in cells)
        ratios = ", ".join(f"{ratio:.2f}x" for _, ratio in cells)
        print(f"{name:16s} lines/s {rates}   ratio {ratios}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
