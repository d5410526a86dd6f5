"""The sink registry: every built-in sink in one table, plus the `streamalert.sinks` entry-point group.

A third-party package adds a sink by exposing a `SinkKind` under that group, e.g. in its pyproject.toml:

    [project.entry-points."streamalert.sinks"]
    zulip = "my_package.zulip:KIND"

Receivers then configure it as `zulip_configs: [...]`, validated by its config class.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from streamalert.notify.sinks import (
    alertmanager,
    apprise_sink,
    discord,
    email,
    msteamsv2,
    opsgenie,
    pagerduty,
    slack,
    stdout,
    telegram,
    webhook,
)
from streamalert.notify.sinks.base import SinkKind

if TYPE_CHECKING:
    from streamalert.config.notify import NotifyConfig
    from streamalert.notify.sinks.base import Sink

BUILTIN: dict[str, SinkKind[Any]] = {
    kind.name: kind
    for kind in (
        slack.KIND,
        pagerduty.KIND,
        opsgenie.KIND,
        msteamsv2.KIND,
        apprise_sink.KIND,
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


def build_sinks(config: NotifyConfig) -> dict[tuple[str, str], Sink]:
    """Every configured sink, keyed by (receiver, "<kind>/<index>"): built once, so a bad secret file
    fails the start."""
    kinds = registry()
    sinks: dict[tuple[str, str], Sink] = {}
    for receiver in config.receivers:
        for name, kind, sink_config in receiver.sinks:
            try:
                sinks[(receiver.name, name)] = kinds[kind].build(sink_config)
            except ValueError as exc:
                index = name.partition("/")[2]
                raise ValueError(f"receivers: {receiver.name}: {kind}_configs.{index}: {exc}") from None
    return sinks
