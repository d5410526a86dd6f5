"""The sink registry: every built-in sink in one table, plus the `streamalert.sinks` entry-point group.

A third-party package adds a sink by exposing a `SinkKind` under that group, e.g. in its pyproject.toml:

    [project.entry-points."streamalert.sinks"]
    opsgenie = "my_package.opsgenie:KIND"

Receivers then configure it as `opsgenie_configs: [...]`, validated by its config class.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any

from streamalert.notify.sinks import (
    alertmanager,
    discord,
    email,
    pagerduty,
    slack,
    stdout,
    telegram,
    webhook,
)
from streamalert.notify.sinks.base import SinkKind

BUILTIN: dict[str, SinkKind[Any]] = {
    kind.name: kind
    for kind in (
        slack.KIND,
        pagerduty.KIND,
        telegram.KIND,
        discord.KIND,
        email.KIND,
        webhook.KIND,
        alertmanager.KIND,
        stdout.KIND,
    )
}


@functools.cache
def registry() -> dict[str, SinkKind[Any]]:
    """Built-in sinks and those installed packages register; a built-in name cannot be replaced."""
    kinds = dict(BUILTIN)
    for point in entry_points(group="streamalert.sinks"):
        if point.name in kinds:
            continue
        kind = point.load()
        if not isinstance(kind, SinkKind):
            raise TypeError(f"entry point streamalert.sinks:{point.name} is not a SinkKind")
        kinds[kind.name] = kind
    return kinds
