"""The service configuration (`streamalert run --config F`): one YAML file, validated, `${ENV}` substituted."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streamalert.config.notify import LabelName, NotifyConfig, ReceiverSpec
from streamalert.config.yaml_load import safe_load, yaml_problem
from streamalert.durations import parse_duration
from streamalert.sources.kafka_config import KafkaConfig
from streamalert.sources.vector_config import VectorHttpConfig
from streamalert.state.stores import check_url

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration problem, naming the file and the key."""


class HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    listen: str = "127.0.0.1:8080"


class SourcesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vector: VectorHttpConfig | None = None
    kafka: KafkaConfig | None = None


class StdoutSinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SinksConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stdout: StdoutSinkConfig | None = Field(default_factory=StdoutSinkConfig)


# ---- self-monitoring (streamalert.selfmon): built-in alerts about the process itself -------------------------


def _bound(value: str) -> str:
    parse_duration(value)  # raises ValueError naming the text
    return value


class SelfAlertConfig(BaseModel):
    """One built-in alert: on or off, and labels added to (or replacing) its defaults."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = True
    labels: dict[LabelName, str] = Field(default_factory=dict)


class HeldAlertConfig(SelfAlertConfig):
    """An alert whose condition must hold for `for` before it fires."""

    for_: str = Field(default="0s", alias="for")

    _check = field_validator("for_")(_bound)

    def for_ms(self) -> int:
        return parse_duration(self.for_)


class InputSilentConfig(HeldAlertConfig):
    for_: str = Field(default="10m", alias="for")  # no line from the source for this long


class StoreDownConfig(HeldAlertConfig):
    for_: str = Field(default="1m", alias="for")


class LagAlertConfig(HeldAlertConfig):
    for_: str = Field(default="5m", alias="for")
    threshold: int = Field(default=10_000, ge=0)  # records behind, per partition


class CountAlertConfig(SelfAlertConfig):
    """Fires while more than `threshold` were counted in the last `window`."""

    window: str = "15m"
    threshold: int = Field(default=0, ge=0)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be more than 0")
        return value

    def window_ms(self) -> int:
        return parse_duration(self.window)


class BadLinesConfig(CountAlertConfig):
    window: str = "5m"
    threshold: int = Field(default=100, ge=0)  # a few malformed or late lines are normal


class WatchdogConfig(SelfAlertConfig):
    enabled: bool = False  # on, it pages the root receiver unless a route sends it to a dead man's switch


class SelfMonitoringConfig(BaseModel):
    """`self_monitoring:`, see README "Self-monitoring". Every alert is on by default except the Watchdog."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval: str = "15s"  # how often the process samples its metrics and pings its store
    instance: str = ""  # the `instance` label; empty: <hostname>:<listen port>
    labels: dict[LabelName, str] = Field(default_factory=dict)  # added to every self-monitoring alert
    input_silent: InputSilentConfig = Field(default_factory=InputSilentConfig)
    consumer_lag: LagAlertConfig = Field(default_factory=LagAlertConfig)
    store_down: StoreDownConfig = Field(default_factory=StoreDownConfig)
    notifications_dead_lettered: CountAlertConfig = Field(default_factory=CountAlertConfig)
    series_dropped: CountAlertConfig = Field(default_factory=CountAlertConfig)
    input_malformed: BadLinesConfig = Field(default_factory=BadLinesConfig)
    input_late: BadLinesConfig = Field(default_factory=BadLinesConfig)
    reload_failed: HeldAlertConfig = Field(default_factory=HeldAlertConfig)
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be more than 0")
        return value

    def interval_ms(self) -> int:
        return parse_duration(self.interval)


class ReloadConfig(BaseModel):
    """`reload:` hot reload by watching the rules (streamalert.reload.watch); SIGHUP and POST /-/reload always work."""

    model_config = ConfigDict(extra="forbid")

    watch: bool = False  # reload when the rules file, or a file in the rules folder, changes
    debounce: str = "1s"  # changes this close together make one reload (an editor's or a ConfigMap's several writes)

    @field_validator("debounce")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class AppConfig(NotifyConfig):
    """Everything `streamalert run` needs. Durations are strings such as 30s; *_ms properties give ms.
    The notification keys (route, receivers, inhibit_rules, silences, notify) come from NotifyConfig."""

    model_config = ConfigDict(extra="forbid")

    rules: Path
    state: str = "memory://"
    lateness: str = "30s"
    max_delay: str = "10s"
    future_skew: str = "1m"
    shutdown_timeout: str = "20s"
    lease_ttl: str = "10s"  # Redis state: how long a dead writer keeps a standby waiting
    max_series_per_rule: int = Field(default=100_000, gt=0)  # live series one rule may hold (engine caps)
    max_series: int = Field(default=1_000_000, gt=0)  # live series all rules together may hold
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    http: HttpConfig = Field(default_factory=HttpConfig)
    sources: SourcesConfig
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    self_monitoring: SelfMonitoringConfig = Field(default_factory=SelfMonitoringConfig)
    reload: ReloadConfig = Field(default_factory=ReloadConfig)

    @field_validator("lateness", "max_delay", "future_skew", "shutdown_timeout", "lease_ttl")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)  # raises ValueError naming the text
        return value

    @field_validator("state")
    @classmethod
    def _state_url(cls, value: str) -> str:
        check_url(value)  # refused here, before anything starts
        return value

    @field_validator("sources")
    @classmethod
    def _one_source(cls, value: SourcesConfig) -> SourcesConfig:
        if (value.vector is None) == (value.kafka is None):
            raise ValueError("configure exactly one source: sources.kafka or sources.vector (one per process)")
        return value

    @model_validator(mode="after")
    def _external_url(self) -> Self:
        if not self.notify.external_url:  # webhook payloads carry it: Alertmanager always fills it in too
            self.notify.external_url = default_external_url(self.http.listen)
        return self

    @model_validator(mode="after")
    def _notify_keys(self) -> Self:
        problems = self.check()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _replicas_share_redis(self) -> Self:
        kafka = self.sources.kafka
        if kafka is not None and kafka.replicas and not self.state.startswith("redis"):
            raise ValueError("sources.kafka.replicas needs Redis state (state: redis://...): replicas share it")
        if kafka is not None and kafka.replicas:
            # a dead replica's partitions hold the clock only after this long: records it had not forwarded
            # must not be late by then
            hold = kafka.owner_silence_ms()
            if self.ms("lateness") + self.ms("max_delay") <= hold:
                raise ValueError(f"with sources.kafka.replicas, lateness + max_delay must exceed {hold} ms")
        return self

    def ms(self, name: str) -> int:
        return parse_duration(str(getattr(self, name)))


def default_external_url(listen: str) -> str:
    """`notify.external_url` when not set: this host's name and the listener's port, as Alertmanager derives
    its own (`http://<hostname>:9093`). A receiver cannot reach the loopback address the listener may bind."""
    return f"http://{socket.gethostname()}:{listen.rpartition(':')[2]}"


def load_config(path: str | Path, *, unset: list[str] | None = None) -> AppConfig:
    """Read, substitute `${VAR}` / `${VAR:-default}` in string values, validate; ConfigError names file and key.
    A variable that is not set (and has no default) is an error, unless `unset` is given: then its name is
    added there and the `${VAR}` is left as written (for checks that want every problem in one run).
    Relative paths (`rules`, secret and certificate files) are resolved against the file's folder."""
    file = Path(path)
    raw = _read(file)
    missing: list[str] = []
    data = _substitute(raw, missing, keep=unset is not None)
    if unset is not None:
        unset.extend(sorted(set(missing)))
    elif missing:
        raise ConfigError(f"{file}: environment variable(s) not set: {', '.join(sorted(set(missing)))}")
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{file}: {_problems(exc)}") from None
    _resolve_paths(config, file.parent)  # relative to the config file, not the working directory
    if config.templates:  # the files are read and compiled now: a broken one fails check, start and reload alike
        from streamalert.notify.templates import TemplateError, Templates  # noqa: PLC0415 (jinja2: only with files)

        try:
            Templates(config.templates)
        except TemplateError as exc:
            raise ConfigError(f"{file}: {exc}") from None
    return config


def load_routing(path: str | Path, *, unset: list[str]) -> NotifyConfig:
    """The routing tree and receivers for `routes test`: of a service config, or of a plain Alertmanager
    file (neither `rules:` nor `sources:`), of which only `route` and the receivers' names are read (its
    `global:`, templates and receiver settings are Alertmanager's business, not needed to route)."""
    file = Path(path)
    raw = _read(file)
    if "rules" in raw or "sources" in raw:
        return load_config(file, unset=unset)
    receivers = raw.get("receivers") or []
    names = [{"name": r.get("name")} for r in receivers if isinstance(r, dict)] if isinstance(receivers, list) else []
    data = _substitute({"route": raw.get("route"), "receivers": names}, unset, keep=True)
    try:
        config = NotifyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{file}: {_problems(exc)}") from None
    problems = config.check()
    if problems:
        raise ConfigError(f"{file}: {'; '.join(problems)}")
    return config


def _read(file: Path) -> dict[str, Any]:
    """The file's YAML, which must be a map; ConfigError naming the file (and line) otherwise."""
    try:
        raw = safe_load(file.read_text(encoding="utf-8"))  # yaml.safe_load's result and errors, faster
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: must be a map of settings")
    return raw


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        _located(err["loc"], err["msg"].removeprefix("Value error, ")) for err in exc.errors(include_input=False)
    )


def _resolve_paths(model: BaseModel, base: Path) -> None:
    """Every relative Path in the config (rules, `*_file` secrets, certificates), at any depth, made relative
    to `base`, as the config file's header promises."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            setattr(model, name, base / value)
        elif isinstance(value, BaseModel):
            _resolve_paths(value, base)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    _resolve_paths(item, base)
                elif isinstance(item, Path) and not item.is_absolute():
                    value[index] = base / item
    if isinstance(model, ReceiverSpec):
        for _, _, sink in model.sinks:  # validated per sink kind, kept beside the receiver's declared fields
            _resolve_paths(sink, base)


def secret_files(config: AppConfig) -> list[tuple[str, Path]]:
    """Every `*_file` a sink or `notify` reads at start, with its key as errors name it
    (`receivers: oncall: slack_configs.0: webhook_url_file`)."""
    found: list[tuple[str, Path]] = []
    for receiver in config.receivers:
        for name, kind, sink in receiver.sinks:
            where = f"receivers: {receiver.name}: {kind}_configs.{name.partition('/')[2]}"
            for key in type(sink).model_fields:
                value = getattr(sink, key)
                if key.endswith("_file") and isinstance(value, Path):
                    found.append((f"{where}: {key}", value))
    if config.notify.api_token_file is not None:
        found.append(("notify.api_token_file", config.notify.api_token_file))
    return found


def _located(loc: tuple[int | str, ...], message: str) -> str:
    where = ".".join(str(p) for p in loc)
    return f"{where}: {message}" if where else message


def _substitute(value: Any, missing: list[str], *, keep: bool = False) -> Any:
    """`value` with `${VAR}` substituted in every string; names not set are added to `missing` (and, with
    `keep`, left as written)."""
    if isinstance(value, str):

        def replace(found: re.Match[str]) -> str:
            name, default = found.group(1), found.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            missing.append(name)
            return found.group(0) if keep else ""

        return _ENV.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, missing, keep=keep) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, missing, keep=keep) for v in value]
    return value
