"""A quantile series' checkpoint in live mode: a dense window (one entry a millisecond) stored after every
batch of new entries, against a reference measured in the same run: serialising the same window's flat form,
already built (orjson.dumps alone; what one unchunked value costs just to write, more than a chunked one
whose middle chunks are kept serialised).

    python bench/quantile_checkpoint_bench.py [--window-ms 300000] [--batch 500] [--checkpoints 200] [--runs 3]

Prints per run the milliseconds per checkpoint (QuantileSeries.dump + orjson.dumps of its result) and per
reference, and their ratio; then the ratios' spread.

`--engine`: instead, the engine's own checkpoints of a `p95(ms) > 1200` rule over a 5-minute window (or
`--window-ms`) fed two samples a millisecond in 300-line batches with a checkpoint after each, as live mode
does: the bytes each checkpoint writes (the series' field and the parts stored apart, Engine._store_parts)
over the last 20 s of event time, against the whole window's stored form at the end, and the milliseconds
to build each checkpoint.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamalert.decode import format_ms
from streamalert.engine import Engine
from streamalert.rules.kinds import QUANTILE_CHUNKS, QuantileSeries
from streamalert.testing import rules_from_yaml

T0 = 1_733_000_000_000


def _run(window_ms: int, batch: int, checkpoints: int) -> tuple[float, float]:
    series = QuantileSeries(1200.0, window_ms // QUANTILE_CHUNKS)
    flat = QuantileSeries(1200.0)  # the same window, stored flat: the reference
    now = 0
    for now in range(window_ms):
        for one in (series, flat):
            one.observe(now, 50.0 + now % 97)
            one.evict(now, window_ms)
    series.dump()
    spent = floor = 0.0
    for _ in range(checkpoints):
        for _ in range(batch):
            now += 1
            for one in (series, flat):
                one.observe(now, 50.0 + now % 97)
                one.evict(now, window_ms)
        start = time.process_time()
        stored = orjson.dumps(series.dump())
        spent += time.process_time() - start
        form = flat.dump()  # built outside the timing: the serialisation alone
        start = time.process_time()
        text = orjson.dumps(form)
        floor += time.process_time() - start
        assert len(stored) >= len(text) - 16  # the same entries (chunked: a few brackets more)
    return spent / checkpoints * 1e3, floor / checkpoints * 1e3


def _engine_run(window_ms: int) -> tuple[list[int], list[float], int]:
    """Bytes written and seconds taken by each checkpoint of the last 20 s; the whole window's stored size."""
    rules = rules_from_yaml(
        f"rules:\n  - name: p95\n    match: {{svc: api}}\n    window: {window_ms}ms\n    condition: p95(ms) > 1200\n"
    )
    engine = Engine(rules, lateness_ms=0)
    rng = random.Random(1)
    end_ms = window_ms + 20_000
    batch: list[bytes] = []
    written: list[int] = []
    seconds: list[float] = []
    for ms in range(end_ms):
        stamp = format_ms(T0 + ms)
        for _ in range(2):
            value = round(rng.lognormvariate(3, 0.8), 1)
            batch.append(b'{"svc":"api","ms":%r,"timestamp":"%s"}' % (value, stamp.encode()))
        if len(batch) >= 300:
            engine.accept_lines(batch)
            engine.advance()
            batch = []
            start = time.process_time()
            changes = engine.checkpoint()
            spent = time.process_time() - start
            if ms >= end_ms - 20_000:
                written.append(sum(len(v) for table in changes.upserts.values() for v in table.values()))
                seconds.append(spent)
    (series,) = engine._series[0].values()
    return written, seconds, len(orjson.dumps(series.dump()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-ms", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=500, help="new entries (milliseconds) per checkpoint")
    parser.add_argument("--checkpoints", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engine", action="store_true", help="the engine's checkpoints: bytes written (see above)")
    args = parser.parse_args()
    if args.engine:
        written, seconds, whole = _engine_run(args.window_ms)
        mean = sum(written) / len(written)
        print(
            f"{len(written)} checkpoints over the last 20 s: bytes written mean {mean:,.0f}, max {max(written):,}; "
            f"the whole window's stored form {whole:,} bytes ({whole / mean:.0f}x the mean); "
            f"{sum(seconds) / len(seconds) * 1e3:.2f} ms of CPU per checkpoint"
        )
        return
    ratios = []
    for run in range(args.runs):
        spent, floor = _run(args.window_ms, args.batch, args.checkpoints)
        ratios.append(spent / floor)
        print(f"run {run + 1}: checkpoint {spent:.2f} ms, reference {floor:.2f} ms, ratio {spent / floor:.2f}")
    print(f"ratio to the reference: {min(ratios):.2f}-{max(ratios):.2f} over {args.runs} runs")


if __name__ == "__main__":
    main()
