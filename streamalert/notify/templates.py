"""Message templates: a sink's `title`, `text`, `subject`, `html` and `summary`, written in Jinja2 and rendered in
its sandbox, over Alertmanager's data model under Alertmanager's names.

- Data: `Receiver`, `Status`, `Alerts` (each with `Status`, `Labels`, `Annotations`, `StartsAt`, `EndsAt`,
  `GeneratorURL`, `Fingerprint`, and our `Value`; `Alerts.Firing` and `Alerts.Resolved` filter them),
  `GroupLabels`, `CommonLabels`, `CommonAnnotations`, `ExternalURL`, `GroupKey`, `TruncatedAlerts`. Label
  maps have `SortedPairs` (items with `Name` and `Value`), `Names`, `Values` and `Remove([...])`.
  `StartsAt`/`EndsAt` are UTC datetimes (`EndsAt` is None while firing).
- Helpers, as filters and functions: `toUpper`, `toLower`, `title`, `join`, `safeHtml`, `trimSpace`,
  `sortedPairs`, `reReplaceAll` and `match` (RE2, as Alertmanager's).
- The sandbox (`ImmutableSandboxedEnvironment`) refuses underscore attributes and changes to the data; the data
  is plain maps, lists, strings and datetimes, so there is nothing beyond the model to reach. Each output is cut
  off at MAX_OUTPUT characters: a longer one is an error.
- `html` is autoescaped (values are escaped unless passed through `safeHtml`); the other fields are plain text.
- Top-level `templates:` files (globs allowed) define macros every template can call by name; a file may also be
  imported (`{% import "file.j2" as t %}`, by its file name).
- A render error (syntax, an undefined name's attribute, a failing helper, too long) never stops a delivery:
  that field falls back to the sink's own format, and the caller logs and counts it.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import re2

from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint

if TYPE_CHECKING:  # jinja2 is imported when a template is compiled: loading a config without any skips it
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from streamalert.config.notify import NotifyConfig

FIELDS = ("title", "text", "subject", "html", "summary")
MAX_OUTPUT = 64 * 1024  # characters of one rendered field: far above any vendor's limit


class TemplateError(ValueError):
    """A template that cannot be loaded or rendered; the message names the file or field and the cause."""


class Pair(NamedTuple):
    Name: str
    Value: str


class KV(dict[str, str]):
    """A label or annotation map with Alertmanager's KV methods."""

    @property
    def SortedPairs(self) -> list[Pair]:
        return [Pair(k, v) for k, v in sorted(self.items())]

    @property
    def Names(self) -> list[str]:
        return sorted(self)

    @property
    def Values(self) -> list[str]:
        return [v for _, v in sorted(self.items())]

    def Remove(self, names: Iterable[str]) -> KV:
        drop = set(names)
        return KV({k: v for k, v in self.items() if k not in drop})


class AlertList(list[dict[str, Any]]):
    @property
    def Firing(self) -> AlertList:
        return AlertList(a for a in self if a["Status"] == "firing")

    @property
    def Resolved(self) -> AlertList:
        return AlertList(a for a in self if a["Status"] == "resolved")


def _time(text: str) -> datetime | None:
    if text == ZERO_TIME:
        return None
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def _alert(alert: Alert, external_url: str) -> dict[str, Any]:
    return {
        "Status": alert.status,
        "Labels": KV(alert.labels),
        "Annotations": KV(alert.annotations),
        "StartsAt": _time(alert.starts_at),
        "EndsAt": _time(alert.ends_at),
        "GeneratorURL": external_url,
        "Fingerprint": alert.fingerprint,
        "Value": alert.value,
    }


def data(notification: Notification) -> dict[str, Any]:
    """Alertmanager's template data for one notification."""
    return {
        "Receiver": notification.receiver,
        "Status": notification.status,
        "Alerts": AlertList(_alert(a, notification.external_url) for a in notification.alerts),
        "GroupLabels": KV(notification.group_labels),
        "CommonLabels": KV(notification.common_labels),
        "CommonAnnotations": KV(notification.common_annotations),
        "ExternalURL": notification.external_url,
        "GroupKey": notification.group_key,
        "TruncatedAlerts": notification.truncated_alerts,
    }


def _join(items: Any, separator: Any = "") -> str:
    """Both spellings: Go's `join sep list` as a function (`join(",", list)`) and Jinja's `list|join(",")`."""
    if isinstance(items, str) and not isinstance(separator, str):
        items, separator = separator, items
    return str(separator).join(str(i) for i in items)


def _regex(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise TemplateError(f"invalid RE2 pattern {pattern!r}") from exc


def _markup(text: str) -> Any:
    from markupsafe import Markup  # noqa: PLC0415 (with jinja2, on use)

    return Markup(text)


HELPERS: dict[str, Callable[..., Any]] = {
    "toUpper": lambda s: str(s).upper(),
    "toLower": lambda s: str(s).lower(),
    "title": lambda s: str(s).title(),
    "trimSpace": lambda s: str(s).strip(),
    "join": _join,
    "safeHtml": lambda s: _markup(str(s)),  # the point of the helper: the template author vouches for the HTML
    "sortedPairs": lambda m: [Pair(str(k), str(v)) for k, v in sorted(dict(m).items())],
    "reReplaceAll": lambda pattern, repl, text: _regex(pattern).sub(repl.replace("$", "\\"), str(text)),
    "match": lambda pattern, text: _regex(pattern).search(str(text)) is not None,
}


def template_files(patterns: Sequence[Path]) -> list[Path]:
    """The files the `templates:` entries name (globs expanded, sorted, each once)."""
    found: list[Path] = []
    for pattern in patterns:
        matched = sorted(Path(p) for p in glob.glob(str(pattern))) if glob.has_magic(str(pattern)) else [pattern]
        found.extend(p for p in matched if p not in found)
    return found


class Templates:
    """The compiled template files and every field template, in a text and an HTML (autoescaping) sandbox."""

    def __init__(self, patterns: Sequence[Path] = ()) -> None:
        import jinja2  # noqa: PLC0415 (on use: see TYPE_CHECKING above)

        self.files: dict[str, str] = {}  # file name -> source
        for path in template_files(patterns):
            try:
                self.files[path.name] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise TemplateError(f"templates: {path}: cannot read: {getattr(exc, 'strerror', exc)}") from None
        self._envs = {html: self._environment(html) for html in (False, True)}
        self._compiled: dict[tuple[bool, str], jinja2.Template] = {}
        self._macros: dict[str, str] = {}  # macro name -> file
        for name in self.files:
            try:
                module = self._envs[False].get_template(name).module
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(f"templates: {name}: line {exc.lineno}: {exc.message}") from None
            except jinja2.TemplateError as exc:
                raise TemplateError(f"templates: {name}: {exc}") from None
            for macro in (m for m in dir(module) if not m.startswith("_")):
                if macro in self._macros:
                    raise TemplateError(f"templates: {name}: macro {macro} is also defined in {self._macros[macro]}")
                self._macros[macro] = name

    def _environment(self, html: bool) -> ImmutableSandboxedEnvironment:
        import jinja2  # noqa: PLC0415 (on use: see TYPE_CHECKING above)
        from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: PLC0415

        def load(name: str) -> tuple[str, str, Callable[[], bool]] | None:  # the file name: errors can say it
            return (self.files[name], name, lambda: True) if name in self.files else None

        env = ImmutableSandboxedEnvironment(
            loader=jinja2.FunctionLoader(load), autoescape=html, trim_blocks=True, lstrip_blocks=True
        )
        env.filters.update(HELPERS)
        env.globals.update(HELPERS)
        return env

    def compile(self, source: str, *, html: bool = False) -> jinja2.Template:
        """The template for this source (cached); TemplateError says the line of a syntax error."""
        key = (html, source)
        found = self._compiled.get(key)
        if found is None:
            import jinja2  # noqa: PLC0415 (imported by __init__ already: a dictionary lookup)

            try:
                found = self._envs[html].from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(f"line {exc.lineno}: {exc.message}") from None
            self._compiled[key] = found
        return found

    def render(self, source: str, values: Mapping[str, Any], *, html: bool = False) -> str:
        """Render `source` over `values` (with every file's macros); TemplateError on any failure."""
        template = self.compile(source, html=html)
        context = dict(values)
        try:
            for name in self.files:  # macros see the notification's data, as Alertmanager's `template` calls do
                module = self._envs[html].get_template(name).make_module(dict(values))
                context.update((m, getattr(module, m)) for m, f in self._macros.items() if f == name)
            out: list[str] = []
            size = 0
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateError(f"output longer than {MAX_OUTPUT} characters")
                out.append(chunk)
        except TemplateError:
            raise
        except Exception as exc:  # anything a template can raise (undefined, sandbox, a helper's error)
            raise TemplateError(f"{type(exc).__name__}: {exc}{self._where(exc)}") from None
        return "".join(out).strip()

    def _where(self, exc: BaseException) -> str:
        """` (in FILE, line N)` when the error happened in a templates file (Jinja's traceback names it)."""
        where = ""
        tb = exc.__traceback__
        while tb is not None:
            name = tb.tb_frame.f_code.co_filename
            if name in self.files:
                where = f" (in {name}, line {tb.tb_lineno})"
            tb = tb.tb_next
        return where

    def render_fields(
        self, notification: Notification, sources: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """(rendered fields, errors by field) for one notification; a failed field is left out."""
        if not sources:
            return {}, {}
        values = data(notification)
        rendered: dict[str, str] = {}
        errors: dict[str, str] = {}
        for field, source in sources.items():
            try:
                rendered[field] = self.render(source, values, html=field == "html")
            except TemplateError as exc:
                errors[field] = str(exc)
        return rendered, errors


def check_syntax(source: str) -> str:
    """Config check of one field template (without the files' macros: those are checked by `check`)."""
    import jinja2  # noqa: PLC0415 (on use: see TYPE_CHECKING above)
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: PLC0415

    try:
        ImmutableSandboxedEnvironment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"template syntax error at line {exc.lineno}: {exc.message}") from None
    return source


def sample_notification(receiver: str, sink: str, external_url: str = "") -> Notification:
    """A notification with one firing and one resolved alert, the labels and annotations rules usually give."""
    alerts = []
    for status, instance in (("firing", "db-1"), ("resolved", "db-2")):
        labels = {"alertname": "HighErrorRate", "severity": "critical", "team": "payments", "instance": instance}
        annotations = {
            "summary": f"5xx rate above 5% on {instance}",
            "description": "Errors over the last 5 minutes.",
            "runbook_url": "https://runbooks.example/high-error-rate",
        }
        ends = "2026-01-26T09:05:00Z" if status == "resolved" else ZERO_TIME
        alerts.append(
            Alert(fingerprint(labels), status, labels, annotations, "2026-01-26T09:00:00Z", ends, 0.07)  # type: ignore[arg-type]
        )
    return Notification(
        id="sample",
        receiver=receiver,
        sink=sink,
        group_key='{}:{alertname="HighErrorRate"}',
        group_labels={"alertname": "HighErrorRate"},
        alerts=tuple(alerts),
        at="2026-01-26T09:05:00Z",
        external_url=external_url,
    )


def check_all(config: NotifyConfig) -> list[str]:
    """`check`: the template files load, and every sink's templates render against a sample notification.
    Each problem says where: `templates: FILE: ...` or `receivers: NAME: KIND_configs.N.FIELD: ...`."""
    if not config.templates and not any(s.template_sources() for r in config.receivers for _, _, s in r.sinks):
        return []  # nothing to load or render (and jinja2 stays unimported)
    try:
        templates = Templates(config.templates)
    except TemplateError as exc:
        return [str(exc)]
    problems = []
    for receiver in config.receivers:
        for name, kind, sink_config in receiver.sinks:
            sample = sample_notification(receiver.name, name, config.notify.external_url)
            _, errors = templates.render_fields(sample, sink_config.template_sources())
            index = name.partition("/")[2]
            problems += [f"receivers: {receiver.name}: {kind}_configs.{index}.{f}: {e}" for f, e in errors.items()]
    return problems
