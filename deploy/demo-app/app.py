"""A stand-in application for the deploy demos: structlog-style JSON lines, one log file per container.

It writes what the crm mailer's containers would (celery_beat's heartbeat, celery_worker's rate limiter
errors, crm_web's requests) to LOG_DIR/<container>.log, and echoes every line on stdout. The lines carry
no `app`, `container` or `host`: as with a real app, Vector adds them (deploy/vector/*.toml), which is what
the rules in config/rules match on. Standard library only, so it runs on the plain python image.

Story, repeated: celery_beat logs every BEAT_EVERY_S seconds for BEAT_RUN_S seconds, then is silent for
BEAT_PAUSE_S (longer than mailer_celery_beat_down's absent_for of 5 minutes: the alert fires, and resolves
when beat logs again); celery_worker logs a fail-open rate limiter error every ERROR_EVERY_S seconds.

`--simulate SECONDS` writes that many seconds of the story at once, stamped from `--start` (ISO 8601,
default now), without sleeping: the tests replay its output.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TICK_S = 1.0


def _env_seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class Demo:
    def __init__(self, log_dir: Path, *, echo: bool) -> None:
        self.log_dir = log_dir
        self.echo = echo
        self.beat_every = _env_seconds("BEAT_EVERY_S", 30)
        self.beat_run = _env_seconds("BEAT_RUN_S", 120)
        self.beat_pause = _env_seconds("BEAT_PAUSE_S", 420)
        self.error_every = _env_seconds("ERROR_EVERY_S", 90)
        self.request_every = _env_seconds("REQUEST_EVERY_S", 5)
        self.files: dict[str, Any] = {}
        self.next_beat = self.next_error = self.next_request = 0.0

    def write(self, container: str, at: datetime, **fields: Any) -> None:
        # structlog's JSONRenderer after TimeStamper(fmt="iso", utc=True) and add_log_level
        line = json.dumps({"timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"), **fields})
        out = self.files.get(container)
        if out is None:
            out = self.files[container] = (self.log_dir / f"{container}.log").open("a", encoding="utf-8")
        out.write(line + "\n")
        out.flush()  # Vector tails the file: a line is there as soon as it is written
        if self.echo:
            print(f"{container}: {line}", flush=True)

    def step(self, elapsed: float, at: datetime) -> None:
        """Write what is due `elapsed` seconds into the story."""
        beating = elapsed % (self.beat_run + self.beat_pause) < self.beat_run
        if elapsed >= self.next_beat:
            self.next_beat += self.beat_every
            if beating:
                self.write(
                    "celery_beat",
                    at,
                    level="info",
                    logger="celery.beat",
                    event="beat: Sending due task send_pending_emails (mailer.tasks.send_pending_emails)",
                )
        if elapsed >= self.next_request:
            self.next_request += self.request_every
            self.write(
                "crm_web", at, level="info", logger="django.request", event="request_finished", path="/api/campaigns"
            )
        if elapsed >= self.next_error:
            self.next_error += self.error_every
            self.write(
                "celery_worker",
                at,
                level="error",
                logger="mailer.ratelimit",
                event="Error reserving rate limit token (Redis unavailable), allowing send (fail-open)",
                error_type="rate_limiter_backend_error",
                policy="fail_open",
                error="ConnectionError: Error 111 connecting to redis:6379. Connection refused.",
            )

    def close(self) -> None:
        for out in self.files.values():
            out.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulate", type=float, help="write this many seconds of the story at once, then exit")
    parser.add_argument("--start", help="with --simulate: the time of the first line (ISO 8601; default now)")
    args = parser.parse_args(argv)
    log_dir = Path(os.environ.get("LOG_DIR", "/var/log/app"))
    log_dir.mkdir(parents=True, exist_ok=True)
    # a stand-alone app, not streamalert: it reads the system clock itself (TID251 is streamalert's rule)
    now = datetime.now(UTC)  # noqa: TID251
    demo = Demo(log_dir, echo=args.simulate is None)
    try:
        if args.simulate is not None:
            start = datetime.fromisoformat(args.start) if args.start else now
            elapsed = 0.0
            while elapsed < args.simulate:
                demo.step(elapsed, start + timedelta(seconds=elapsed))
                elapsed += TICK_S
            return 0
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop at once, files closed by `finally`
        started = time.monotonic()  # noqa: TID251
        while True:
            elapsed = time.monotonic() - started  # noqa: TID251
            demo.step(elapsed, datetime.now(UTC))  # noqa: TID251
            time.sleep(TICK_S)
    finally:
        demo.close()


if __name__ == "__main__":
    sys.exit(main())
