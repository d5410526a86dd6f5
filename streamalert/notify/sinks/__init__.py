"""The sink registry: every built-in sink in one table, plus the `streamalert.sinks` entry-point group.

A third-party package adds a sink by exposing a `SinkKind` under that group, e.g. in its pyproject.toml:

    [project.entry-points."streamalert.sinks"]
    zulip = "my_package.zulip:KIND"

Receivers then configure it as `zulip_configs: [...]`, validated by its config class.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from streamalert.notify.sinks.base import SinkKind

if TYPE_CHECKING:
    from streamalert.config.notify import NotifyConfig
    from streamalert.notify.sinks.base import Sink

# name -> the module of this package whose KIND it is
_BUILTIN_MODULES = {
    "slack": "slack",
    "pagerduty": "pagerduty",
    "opsgenie": "opsgenie",
    "msteamsv2": "msteamsv2",
    "apprise": "apprise_sink",
    "telegram": "telegram",
    "discord": "discord",
    "email": "email",
    "webhook": "webhook",
    "alertmanager": "alertmanager",
    "stdout": "stdout",
}


class _Kinds(Mapping[str, SinkKind[Any]]):
    """Sink kinds by name. A built-in kind's module is imported when the kind is first looked up, so loading a
    config pays for the sinks it configures, not for all eleven (bench/startup_bench.py)."""

    def __init__(self, modules: Mapping[str, str], found: Mapping[str, SinkKind[Any]] | None = None) -> None:
        self._modules = dict(modules)
        self._kinds: dict[str, SinkKind[Any] | None] = dict.fromkeys(self._modules)
        self._kinds.update(found or {})

    def __getitem__(self, name: str) -> SinkKind[Any]:
        kind = self._kinds[name]  # KeyError: no such sink
        if kind is None:
            kind = self._kinds[name] = importlib.import_module(f"{__name__}.{self._modules[name]}").KIND
        return kind

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)


BUILTIN: Mapping[str, SinkKind[Any]] = _Kinds(_BUILTIN_MODULES)


@functools.cache
def registry() -> Mapping[str, SinkKind[Any]]:
    """Built-in sinks and those installed packages register; a built-in name cannot be replaced."""
    found: dict[str, SinkKind[Any]] = {}
    for point in entry_points(group="streamalert.sinks"):
        if point.name in BUILTIN or point.name in found:
            continue
        kind = point.load()
        if not isinstance(kind, SinkKind):
            raise TypeError(f"entry point streamalert.sinks:{point.name} is not a SinkKind")
        found[kind.name] = kind
    return _Kinds(_BUILTIN_MODULES, found) if found else BUILTIN


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
