"""Hot reload of `streamalert run`'s configuration: SIGHUP or `POST /-/reload`, validated before it applies.

A reload reads the config file again, with its rules and secret files, and checks it exactly as a start
would. A bad file is refused: the error (file, rule and field named) is logged as `config_reload_failed`,
`streamalert_config_last_reload_successful` drops to 0, and the running configuration stays. A good one ends
the current term as a shutdown would (the batch in flight is committed and acknowledged) and the next term
starts from the stored state with the new rules, routes and receivers: rules whose definition did not change
keep their windows and alerts (state is keyed by rule name and a digest of its semantics), changed and
removed rules resolve their firing alerts explicitly (`retired`), and notification groups, silences and the
outbox are in the store, so nothing of them is lost.

What a term cannot change is refused with a message: the state store, the listener, the lease TTL, the
Vector path, and Kafka's replicas mode (those need a restart). In replicas mode every replica's intake
matches with the rules it started with, so a reload is refused there: restart the replicas one at a time.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from streamalert.clock import Clock
from streamalert.config.app import AppConfig
from streamalert.config.rules import Rule
from streamalert.engine import Engine
from streamalert.model import AlertState, Transition
from streamalert.notify.sinks.base import Sink
from streamalert.telemetry.metrics import Metrics

_log = structlog.get_logger("streamalert.reload")


@dataclass(slots=True)
class Setup:
    """What one configuration gives a term: the config, its rules and its built sinks."""

    config: AppConfig
    rules: list[Rule]
    sinks: dict[tuple[str, str], Sink] | None


# Reads and checks the config file again; raises ValueError with every problem named (file, rule, field).
Loader = Callable[[], Setup]


class Reloader:
    """Takes reload requests, validates them, and hands the next term a checked setup."""

    def __init__(self, current: Setup, loader: Loader | None, metrics: Metrics, clock: Clock) -> None:
        self.current = current
        self.loader = loader
        self.metrics = metrics
        self.clock = clock
        self.pending: Setup | None = None
        self.requested = asyncio.Event()
        metrics.config_reload_ok.set(1)
        metrics.config_reload_time.set(clock.now_ms() / 1000)

    def reload(self) -> str | None:
        """Validate the file now; on success the running term is asked to end. The error, or None."""
        if self.loader is None:
            return "reload is not available: the process was not started from a config file"
        try:
            setup = self.loader()
            _unchangeable(self.current.config, setup.config)
        except ValueError as exc:
            self.metrics.config_reload_ok.set(0)
            _log.error("config_reload_failed", error=str(exc))
            return str(exc)
        self.pending = setup
        self.metrics.config_reload_ok.set(1)
        self.metrics.config_reload_time.set(self.clock.now_ms() / 1000)
        _log.info("config_reload_accepted", rules=len(setup.rules))
        self.requested.set()
        return None

    def take(self) -> Setup | None:
        """The setup the next term runs with, when a reload was accepted since the last call."""
        setup, self.pending = self.pending, None
        self.requested.clear()
        if setup is not None:
            self.current = setup
        return setup

    def route(self) -> web.RouteDef:
        """`POST /-/reload` (as Prometheus and Alertmanager name it), with the API's bearer token."""

        async def handle(request: web.Request) -> web.Response:
            token = self.current.config.notify.token()
            if token is None:
                return web.json_response({"error": "reload over HTTP is disabled: set notify.api_token"}, status=403)
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, f"Bearer {token}".encode()):
                return web.json_response(
                    {"error": "missing or wrong bearer token"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="streamalert"'},
                )
            error = self.reload()
            if error is not None:
                return web.json_response({"status": "error", "error": error}, status=400)
            return web.json_response({"status": "success"})

        return web.post("/-/reload", handle)


def _unchangeable(old: AppConfig, new: AppConfig) -> None:
    """Refuse changes a term cannot take: they are fixed for the life of the process."""
    fixed = [
        ("state", old.state, new.state),
        ("http", old.http, new.http),
        ("lease_ttl", old.lease_ttl, new.lease_ttl),
        ("sources (kind)", old.sources.vector is None, new.sources.vector is None),
    ]
    if old.sources.vector is not None and new.sources.vector is not None:
        fixed.append(("sources.vector.path", old.sources.vector.path, new.sources.vector.path))
    if old.sources.kafka is not None and new.sources.kafka is not None:
        fixed.append(("sources.kafka.replicas", old.sources.kafka.replicas, new.sources.kafka.replicas))
    if old.sources.kafka is not None and old.sources.kafka.replicas:
        raise ValueError(
            "reload is not supported in replicas mode (every replica's intake would have to agree on the "
            "rules): restart the replicas one at a time"
        )
    changed = [name for name, before, after in fixed if before != after]
    if changed:
        raise ValueError(f"{', '.join(changed)}: cannot change while running; restart to change it")


def retired(engine: Engine, kept_rules: list[Rule], at_ms: int) -> list[Transition]:
    """Resolved transitions, at `at_ms`, for every alert firing under a rule that the new configuration
    changed or removed: its state is not carried over (the rule now means something else), so its alerts
    must not stay open in Alertmanager, PagerDuty or a chat channel."""
    kept = {f"{rule.name}:{rule.digest}" for rule in kept_rules}
    names = {rule.name for rule in kept_rules}
    out: list[Transition] = []
    for rule, key in engine.firing():
        if f"{rule.name}:{rule.digest}" in kept:
            continue
        reason = "rule changed by a config reload" if rule.name in names else "rule removed by a config reload"
        labels = dict(rule.labels)
        labels.update(zip(rule.group_by, key, strict=True))
        out.append(
            Transition(at_ms, rule.name, AlertState.RESOLVED, tuple(sorted(labels.items())), 0, (("reason", reason),))
        )
    return out
