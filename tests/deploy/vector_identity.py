"""What Vector delivers to streamalert for one log line, per deploy/vector/*.toml, written in Python.

`deliver` applies the `identity` remap transform by hand: the file source's event ({file, host, message,
source_type, timestamp}) becomes the line's JSON object, with Vector's read time only where the line has no
time of its own, and the identity fields added where the line lacks them: `host` (Vector's host name),
`container` (the file's name without .log), `app` and `service` (LOG_APP, LOG_SERVICE when not empty).
test_vector.py runs the real VRL program (pyvrl, Vector's VRL runtime) on the same inputs and requires the
same result, so the replay tests built on `deliver` test the shipped transform.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

TIME_KEYS = ("timestamp", "@timestamp", "time", "ts")  # streamalert's, in its order (decode.TIME_KEYS)


def file_event(line: str, *, path: str, host: str, read_at: str) -> dict[str, Any]:
    """The event Vector's file source makes of a line (legacy log namespace)."""
    return {"file": path, "host": host, "message": line, "source_type": "file", "timestamp": read_at}


def deliver(line: str, *, path: str, host: str, read_at: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The event after the identity transform: what the sink sends (JSON) to streamalert or Kafka."""
    event = file_event(line, path=path, host=host, read_at=read_at)
    try:
        parsed = json.loads(line)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        event = dict(parsed)
        if not any(key in event for key in TIME_KEYS):
            event["timestamp"] = read_at
    event.setdefault("host", host)
    named = re.search(r"([^/]+)\.log$", path)
    if named is not None:
        event.setdefault("container", named.group(1))
    for variable, key in (("LOG_APP", "app"), ("LOG_SERVICE", "service")):
        if env.get(variable):
            event.setdefault(key, env[variable])
    return event
