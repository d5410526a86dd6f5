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
Vector path, Kafka's replicas mode and, in replicas mode, every Kafka setting (those need a restart).
In replicas mode a reload accepted by one replica is published to the others through Redis; they read their
own files again and switch only to the same configuration (`Setup.digest`): see `ConfigSync`. With
`reload.watch`, a change in the rules folder reloads too (`watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import orjson
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from redis.exceptions import RedisError
from watchfiles import awatch

from streamalert.clock import Clock, Stopwatch
from streamalert.config.app import AppConfig, default_external_url
from streamalert.config.rules import Rule
from streamalert.durations import parse_duration
from streamalert.engine import Engine
from streamalert.model import AlertState, Transition
from streamalert.notify.sinks.base import Sink
from streamalert.state import keys
from streamalert.telemetry.metrics import Metrics

_log = structlog.get_logger("streamalert.reload")


@dataclass(slots=True)
class Setup:
    """What one configuration gives a term: the config, its rules and its built sinks."""

    config: AppConfig
    rules: list[Rule]
    sinks: dict[tuple[str, str], Sink] | None

    @property
    def digest(self) -> str:
        """What replicas compare to agree on the configuration in force: the settings except each process's
        own (`http`, the rules' path: the rules count by content, and an `external_url` derived from the
        listener), secrets masked as pydantic dumps them;
        and every rule's name, semantics, labels and annotations."""
        settings = self.config.model_dump(mode="json", exclude={"http", "rules"})
        notify = settings.get("notify")
        if isinstance(notify, dict) and notify.get("external_url") == default_external_url(self.config.http.listen):
            notify["external_url"] = ""  # derived from this process's own listener when not set: its own
        parts = [orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)]
        for rule in self.rules:
            notes = sorted((name, template.parts) for name, template in rule.annotations)
            parts.append(repr((rule.name, rule.digest, sorted(rule.labels), notes)).encode())
        return hashlib.sha256(b"\x00".join(parts)).hexdigest()[:16]


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
        self.on_accept: Callable[[Setup], None] | None = None  # replicas mode: publish it, switch intake
        metrics.config_reload_ok.set(1)
        metrics.config_reload_time.set(clock.now_ms() / 1000)

    @property
    def latest(self) -> Setup:
        """The setup accepted last: the one the next term runs if a reload is pending, else the current."""
        return self.pending if self.pending is not None else self.current

    def reload(self, expect: str | None = None) -> str | None:
        """Validate the file now; on success the running term is asked to end. The error, or None. With
        `expect` (replicas mode, following another replica), a file whose digest differs is not applied."""
        if self.loader is None:
            return "reload is not available: the process was not started from a config file"
        try:
            setup = self.loader()
            _unchangeable(self.current.config, setup.config)
        except ValueError as exc:
            self.metrics.config_reload_ok.set(0)
            _log.error("config_reload_failed", error=str(exc), expected_digest=expect)
            return str(exc)
        if expect is not None and setup.digest != expect:
            return f"the files here give configuration {setup.digest}, not {expect}"
        self.pending = setup
        if self.on_accept is not None:
            self.on_accept(setup)
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


def watched(rules: Path) -> tuple[Path, bool]:
    """The folder `watch` watches for `rules`, and whether recursively (a rules folder)."""
    rules = rules.resolve()
    return (rules, True) if rules.is_dir() else (rules.parent, False)


async def watch(reloader: Reloader, rules: Path, debounce: str, stop: asyncio.Event) -> None:
    """`reload.watch`: a change in the rules folder (or in the folder holding the rules file) reloads through
    the same validation as SIGHUP; changes within `debounce` of each other make one reload. The folder is
    watched, not the file: editors replace files by renaming, and a Kubernetes ConfigMap volume swaps a
    `..data` symlink beside them. Editors' swap and backup files are ignored (watchfiles' default filter)."""
    folder, recursive = await asyncio.to_thread(watched, rules)
    async for changes in awatch(folder, debounce=parse_duration(debounce), stop_event=stop, recursive=recursive):
        _log.info("config_files_changed", files=sorted(path for _, path in changes)[:10])
        reloader.reload()


def _unchangeable(old: AppConfig, new: AppConfig) -> None:
    """Refuse changes a term cannot take: they are fixed for the life of the process."""
    fixed = [
        ("state", old.state, new.state),
        ("http", old.http, new.http),
        ("lease_ttl", old.lease_ttl, new.lease_ttl),
        ("reload", old.reload, new.reload),
        ("sources (kind)", old.sources.vector is None, new.sources.vector is None),
    ]
    if old.sources.vector is not None and new.sources.vector is not None:
        fixed.append(("sources.vector.path", old.sources.vector.path, new.sources.vector.path))
    if old.sources.kafka is not None and new.sources.kafka is not None:
        fixed.append(("sources.kafka.replicas", old.sources.kafka.replicas, new.sources.kafka.replicas))
        if old.sources.kafka.replicas:  # the intake's consumer lives across terms: it keeps its settings
            fixed.append(("sources.kafka (replicas mode)", old.sources.kafka, new.sources.kafka))
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


class ConfigSync:
    """Replicas mode: every replica runs the configuration published for the namespace in Redis.

    A replica publishes its digest at start when none is stored, and whenever it accepts a reload (SIGHUP
    or `POST /-/reload`). Every `period_s` each replica compares the published digest with its own; when
    they differ it reads its files again (they are the same files everywhere: one ConfigMap or sidecar
    volume) and switches only if they give exactly the published configuration. Otherwise it keeps running
    what it has, says so in `/readyz` (`config`) and `streamalert_config_digest_mismatch`, and tries again
    every `retry_s` (a ConfigMap update reaches pods at different times). A file it cannot validate is
    refused there, as any reload: `config_reload_failed` and `streamalert_config_last_reload_successful` 0.
    """

    def __init__(
        self,
        reloader: Reloader,
        client: aioredis.Redis,
        namespace: str,
        switch: Callable[[Setup], None],
        period_s: float = 1.0,
        retry_s: float = 2.0,
    ) -> None:
        self.reloader, self._redis, self._ns, self._switch = reloader, client, namespace, switch
        self.period_s, self.retry_s = period_s, retry_s
        self.published: str | None = None  # the namespace's digest, as last read
        self.problem: str | None = None  # why this replica does not run the published configuration
        self._publish: str | None = None  # accepted here by an operator, to be published
        self._following = False
        self._tried: tuple[str, Stopwatch] | None = None
        reloader.on_accept = self._accepted

    def _accepted(self, setup: Setup) -> None:
        self._switch(setup)  # intake switches at its next batch; the evaluation at the end of its term
        if not self._following:
            self._publish = setup.digest

    def describe(self) -> str:
        """`/readyz`'s `config` check."""
        mine = self.reloader.latest.digest
        if self.published is None:
            return f"{mine} (not compared yet)"
        if self.published == mine:
            return f"{mine} (the namespace's)"
        return f"{mine}, the namespace runs {self.published}: {self.problem or 'switching'}"

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: a store outage only delays the comparison."""
        first = True
        while not stop.is_set():
            try:
                await self.step(first=first)
                first = False
            except RedisError as exc:
                _log.warning("config_sync_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.period_s)

    async def step(self, *, first: bool = False) -> None:
        key = keys.config_digest(self._ns)
        if first:
            await self._redis.set(key, self.reloader.latest.digest, nx=True)
        if self._publish is not None:
            digest, self._publish = self._publish, None
            await self._redis.set(key, digest)
            _log.info("config_published", digest=digest)
        raw = cast(bytes | None, await self._redis.get(key))
        self.published = None if raw is None else raw.decode()
        metrics = self.reloader.metrics
        if self.published is None or self.published == self.reloader.latest.digest:
            self.problem = None
            metrics.config_digest_mismatch.set(0)
            return
        metrics.config_digest_mismatch.set(1)
        tried = self._tried
        if tried is not None and tried[0] == self.published and tried[1].elapsed() < self.retry_s:
            return
        self._tried = (self.published, Stopwatch())
        self._following = True
        try:
            error = self.reloader.reload(expect=self.published)
        finally:
            self._following = False
        if error is None:
            self.problem = None
            metrics.config_digest_mismatch.set(0)
            _log.info("config_followed", digest=self.published)
        elif error != self.problem:
            _log.warning(
                "config_digest_mismatch", mine=self.reloader.latest.digest, published=self.published, error=error
            )
            self.problem = error
