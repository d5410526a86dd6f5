"""A quantile series' checkpoint in live mode: a dense window (one entry a millisecond) stored after every
batch of new entries, against a reference measured in the same run: serialising the same window's flat form,
already built (orjson.dumps alone; what one unchunked value costs just to write, more than a chunked one
whose middle chunks are kept serialised).

    python bench/quantile_checkpoint_bench.py [--window-ms 300000] [--batch 500] [--checkpoints 200] [--runs 3]

Prints per run the milliseconds per checkpoint (QuantileSeries.dump + orjson.dumps of its result) and per
reference, and their ratio; then the ratios' spread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamalert.rules.kinds import QUANTILE_CHUNKS, QuantileSeries


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-ms", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=500, help="new entries (milliseconds) per checkpoint")
    parser.add_argument("--checkpoints", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ratios = []
    for run in range(args.runs):
        spent, floor = _run(args.window_ms, args.batch, args.checkpoints)
        ratios.append(spent / floor)
        print(f"run {run + 1}: checkpoint {spent:.2f} ms, reference {floor:.2f} ms, ratio {spent / floor:.2f}")
    print(f"ratio to the reference: {min(ratios):.2f}-{max(ratios):.2f} over {args.runs} runs")


if __name__ == "__main__":
    main()
