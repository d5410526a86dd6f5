"""The stall probe, a process of its own: GET /healthz every ~20 ms, record the longest answer time.

Run apart from the runner so that the runner's own load generation (GIL, threads) cannot pass for a stall
of the service. Each request opens a new connection (as a load balancer's check does), so a loop that cannot
accept shows too. A refused connection (the process is down, e.g. between a kill -9 and its restart) is
counted but is not a stall; a request that gets no answer within the timeout counts as the timeout.

    python -m bench.faults.probe PORT OUT.json      # until SIGTERM, then writes its summary to OUT.json
"""

from __future__ import annotations

import http.client
import signal
import sys
import threading
from pathlib import Path

import orjson

from streamalert.clock import Stopwatch

INTERVAL_S = 0.02
TIMEOUT_S = 10.0


def main(port: int, out: Path) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    longest, answered, refused, timed_out, slow = 0.0, 0, 0, 0, 0
    clock = Stopwatch()
    at = 0.0
    while not stop.is_set():
        watch = Stopwatch()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            connection.close()
            answered += 1
        except ConnectionRefusedError:
            refused += 1
            stop.wait(INTERVAL_S)
            continue
        except TimeoutError:
            timed_out += 1
        except (OSError, http.client.HTTPException):
            refused += 1  # reset mid-request: the process died under it
            stop.wait(INTERVAL_S)
            continue
        took = watch.elapsed()
        if took > longest:
            longest, at = took, clock.elapsed()
        if took > 0.2:
            slow += 1
        stop.wait(max(0.0, INTERVAL_S - took))
    summary = {
        "longest_s": longest,
        "longest_at_s": at,
        "answered": answered,
        "refused": refused,
        "timed_out": timed_out,
        "over_200ms": slow,
    }
    out.write_bytes(orjson.dumps(summary))


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
