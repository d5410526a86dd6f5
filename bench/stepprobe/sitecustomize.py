"""Where the event loop's long steps go: a probe for a `streamalert run` process, loaded by Python at start.

    PYTHONPATH=bench/stepprobe python bench/faults/run.py --rows groupby-1m   # the service inherits PYTHONPATH

Every Python process started with this folder on PYTHONPATH (the fault suite's service, and its helpers) appends
to `$STEPPROBE_DIR/steps.<pid>.log` (default /tmp): each step of an asyncio loop that ran longer than
STEPPROBE_STEP_MS (default 50 ms), named by the coroutines its task was suspended in when the step ended
(outermost first: where it paused, so the step ran up to there), and each pass of the cyclic collector
longer than 20 ms with its generation. Both are wall time on a monotonic clock. A diagnostic, not a figure
source: it adds a few hundred nanoseconds to each loop step.
"""

from __future__ import annotations

import asyncio.events
import gc
import os
from typing import Any

from streamalert.clock import Stopwatch, WallClock

_DIR = os.environ.get("STEPPROBE_DIR", "/tmp")
_STEP_S = float(os.environ.get("STEPPROBE_STEP_MS", "50")) / 1000
_GC_S = 0.02
_out = open(os.path.join(_DIR, f"steps.{os.getpid()}.log"), "a", buffering=1)  # noqa: SIM115 (process-long)
_gc_began = [Stopwatch()]
_wall = WallClock()


def _collected(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_began[0] = Stopwatch()
        return
    took = _gc_began[0].elapsed()
    if took > _GC_S:
        _out.write(f"{_wall.now_ms() / 1000:.3f} gc gen{info['generation']} {took * 1000:.1f} ms\n")


def _where(handle: asyncio.events.Handle) -> str:
    """The coroutines a step's task is suspended in (the three innermost), or the callback."""
    callback: Any = getattr(handle, "_callback", None)
    task = getattr(callback, "__self__", None)
    if not isinstance(task, asyncio.Task):
        return repr(callback)[:120]
    coro: Any = task.get_coro()
    names = []
    while coro is not None and hasattr(coro, "cr_frame"):
        frame = coro.cr_frame
        names.append(f"{coro.__qualname__}:{frame.f_lineno if frame is not None else '?'}")
        coro = coro.cr_await
    return " > ".join(names[-3:])


_run = asyncio.events.Handle._run


def _timed_run(self: asyncio.events.Handle) -> None:
    watch = Stopwatch()
    _run(self)
    took = watch.elapsed()
    if took > _STEP_S:
        _out.write(f"{_wall.now_ms() / 1000:.3f} step {took * 1000:.1f} ms {_where(self)}\n")


gc.callbacks.append(_collected)
asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]
