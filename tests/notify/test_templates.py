"""Message templates: Alertmanager's data model and helpers in Jinja2's sandbox, bounded output, fallback on
error (logged and counted), macros from `templates:` files, what each sink does with them, and `check`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from streamalert.cli import main
from streamalert.config.notify import NotifyConfig
from streamalert.notify.model import Notification
from streamalert.notify.notifier import Notifier
from streamalert.notify.sinks import discord, email, pagerduty, slack, telegram
from streamalert.notify.templates import MAX_OUTPUT, TemplateError, Templates, data, sample_notification
from streamalert.telemetry.metrics import Metrics
from tests.notify.test_dispatch_timelines import T0, S, fire
from tests.notify.test_notify_cli import write_config
from tests.notify.vendor import Vendor, serve

SAMPLE = sample_notification("team", "slack/0", "https://streamalert.example")
DATA = data(SAMPLE)


def render(source: str, *, html: bool = False, templates: Templates | None = None) -> str:
    return (templates or Templates()).render(source, DATA, html=html)


def test_data_model_has_alertmanagers_names() -> None:
    """Status, Receiver, Alerts (Firing/Resolved, Labels, Annotations, StartsAt, EndsAt, GeneratorURL,
    Fingerprint), GroupLabels, CommonLabels, CommonAnnotations and ExternalURL, as Alertmanager names them."""
    source = (
        "{{ Status }} {{ Receiver }} {{ Alerts|length }}/{{ Alerts.Firing|length }}/{{ Alerts.Resolved|length }} "
        "{{ GroupLabels.alertname }} {{ CommonLabels.team }} {{ CommonAnnotations.description }} {{ ExternalURL }}\n"
        "{% for a in Alerts %}{{ a.Status }} {{ a.Labels.instance }} {{ a.Annotations.summary }} "
        "{{ a.StartsAt.strftime('%H:%M') }} {{ a.EndsAt.strftime('%H:%M') if a.EndsAt else '-' }} "
        "{{ a.GeneratorURL }} {{ a.Fingerprint|length }}\n{% endfor %}"
    )
    assert render(source).splitlines() == [
        "firing team 2/1/1 HighErrorRate payments Errors over the last 5 minutes. https://streamalert.example",
        "firing db-1 5xx rate above 5% on db-1 09:00 - https://streamalert.example 16",
        "resolved db-2 5xx rate above 5% on db-2 09:00 09:05 https://streamalert.example 16",
    ]


def test_helpers_for_go_template_idioms() -> None:
    """toUpper, toLower, title, join (Go's argument order and Jinja's filter), trimSpace, SortedPairs, sortedPairs,
    Names/Values/Remove, reReplaceAll ($1 groups) and match."""
    assert render("{{ Status|toUpper }} {{ toLower('AbC') }} {{ 'high error'|title }} [{{ trimSpace('  x ') }}]") == (
        "FIRING abc High Error [x]"
    )
    assert render("{{ join(', ', CommonLabels.Names) }} | {{ CommonLabels.Values|join('+') }}") == (
        "alertname, severity, team | HighErrorRate+critical+payments"
    )
    assert render("{% for p in CommonLabels.SortedPairs %}{{ p.Name }}={{ p.Value }};{% endfor %}") == (
        "alertname=HighErrorRate;severity=critical;team=payments;"
    )
    assert render("{% for n, v in GroupLabels|sortedPairs %}{{ n }}:{{ v }}{% endfor %}") == "alertname:HighErrorRate"
    assert render("{{ CommonLabels.Remove(['severity', 'team']).Names|join }}") == "alertname"
    assert render("{{ reReplaceAll('(db)-(\\\\d)', '$2@$1', Alerts[0].Labels.instance) }}") == "1@db"
    assert render("{{ match('^db-', Alerts[0].Labels.instance) }} {{ match('^web', 'db') }}") == "True False"


def test_html_is_escaped_except_through_safe_html() -> None:
    """In `html`, values are escaped; safeHtml passes markup the author vouches for; text fields are not escaped."""
    source = "<b>{{ '<script>x</script>' }}</b>{{ '<i>ok</i>'|safeHtml }}"
    assert render(source, html=True) == "<b>&lt;script&gt;x&lt;/script&gt;</b><i>ok</i>"
    assert render(source) == "<b><script>x</script></b><i>ok</i>"


@pytest.mark.parametrize(
    "source",
    [
        "{{ Alerts.append(1) }}",  # the data cannot be changed
        "{{ CommonLabels.update({'a': 'b'}) }}",
        "{{ (1).__class__.__mro__ }}",  # nothing beyond the data model
        "{{ Alerts[0].StartsAt.__class__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_refuses_what_is_beyond_the_data_model(source: str) -> None:
    """Changing the data or reaching Python internals fails (or renders nothing): no class or global leaks."""
    out: str | TemplateError
    try:
        out = render(source)
    except TemplateError as exc:
        out = exc
    assert out == "" or any(kind in str(out) for kind in ("SecurityError", "UndefinedError")), out


def test_output_is_bounded() -> None:
    """A template writing more than MAX_OUTPUT characters is an error, however it loops."""
    with pytest.raises(TemplateError, match=f"output longer than {MAX_OUTPUT}"):
        render("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}")


def _files(tmp_path: Path, **files: str) -> list[Path]:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return [tmp_path / "*.j2"]


MACROS = """\
{% macro slack_title() %}[{{ Status|toUpper }}:{{ Alerts.Firing|length }}] {{ CommonLabels.alertname }}{% endmacro %}
{% macro labels(alert) %}{% for p in alert.Labels.SortedPairs %}{{ p.Name }}={{ p.Value }} {% endfor %}{% endmacro %}
{% macro broken() %}{{ Nope.x }}{% endmacro %}
"""


def test_template_files_define_macros_every_template_can_call(tmp_path: Path) -> None:
    """Macros of the `templates:` files (a glob) are called by name and see the notification's data; a file can
    also be imported by name; an error inside a macro names the file and line."""
    templates = Templates(_files(tmp_path, **{"common.j2": MACROS, "other.j2": "{% macro hi() %}hi{% endmacro %}"}))
    assert render("{{ slack_title() }} {{ hi() }}", templates=templates) == "[FIRING:1] HighErrorRate hi"
    assert render('{% import "common.j2" as c %}{{ c.labels(Alerts[1]) }}', templates=templates) == (
        "alertname=HighErrorRate instance=db-2 severity=critical team=payments"
    )
    with pytest.raises(TemplateError, match=r"UndefinedError: 'Nope' is undefined \(in common.j2, line 3\)"):
        render("{{ broken() }}", templates=templates)


def test_template_files_problems_name_the_file(tmp_path: Path) -> None:
    """A syntax error names the file and line; a macro defined twice names both files; an unreadable file too."""
    with pytest.raises(TemplateError, match=r"templates: bad.j2: line 2: .*endmacro"):
        Templates(_files(tmp_path, **{"bad.j2": "{% macro x() %}\n{% endfor %}"}))
    (tmp_path / "bad.j2").unlink()
    with pytest.raises(TemplateError, match=r"b\.j2: macro hi is also defined in a\.j2"):
        Templates(
            _files(tmp_path, **{"a.j2": "{% macro hi() %}{% endmacro %}", "b.j2": "{% macro hi() %}{% endmacro %}"})
        )
    with pytest.raises(TemplateError, match=r"templates: .*missing\.j2: cannot read"):
        Templates([tmp_path / "missing.j2"])


def _config(sink: dict[str, Any], kind: str = "stdout", **extra: Any) -> NotifyConfig:
    route = {"receiver": "team", "group_by": ["alertname"], "group_wait": "0s"}
    return NotifyConfig.model_validate(
        {"route": route, "receivers": [{"name": "team", f"{kind}_configs": [sink]}], **extra}
    )


def test_sink_config_refuses_bad_or_unused_templates() -> None:
    """A syntax error is a config error with its line; a template the sink does not read is refused naming the
    ones it does (a webhook sends data, no message)."""
    with pytest.raises(ValidationError, match=r"title.*template syntax error at line 1"):
        _config({"title": "{{ Status "})
    with pytest.raises(
        ValidationError, match=r"subject: not a template this sink uses \(templates it uses: title, text\)"
    ):
        _config({"subject": "x"})
    with pytest.raises(ValidationError, match="text: not a template this sink uses"):
        _config({"url": "https://hooks.example/x", "text": "{{ Status }}"}, kind="webhook")


def test_notifier_renders_at_event_time_and_falls_back_on_error() -> None:
    """Each notification carries its sink's rendered templates; a field that fails keeps the default format,
    is logged (without the rest of the notification) and counted per sink kind and field."""
    notifier = Notifier(_config({"title": "{{ Status|toUpper }}: {{ GroupLabels.alertname }}", "text": "{{ Nope.x }}"}))
    with capture_logs() as logs:
        out = notifier.step([fire(T0, host="a")], T0 + S).outbox
    assert [n.rendered for n in out] == [{"title": "FIRING: db_errors"}]
    assert out[0].title() == "FIRING: db_errors"
    assert Notification.from_json(out[0].to_json()).rendered == out[0].rendered  # kept in the outbox
    assert notifier.counts.template_errors == {("stdout", "text"): 1}
    assert [(e["event"], e["field"], e["sink"]) for e in logs if e["event"] == "template_error"] == [
        ("template_error", "text", "stdout/0")
    ]
    assert "'Nope' is undefined" in logs[-1]["error"]


def test_template_errors_metric_counts_by_sink_and_field() -> None:
    """The pipeline turns the notifier's counts into streamalert_template_errors_total{sink, field}."""
    from streamalert.pipeline import Notify  # noqa: PLC0415
    from streamalert.state.base import Changes  # noqa: PLC0415

    notifier = Notifier(_config({"text": "{{ Nope.x }}"}))
    stage, metrics = Notify(notifier), Metrics()
    notifier.step([fire(T0, host="a")], T0 + S)
    stage.committed(Changes(meta={}), metrics)
    notifier.step([fire(T0 + S, rule="other", host="b")], T0 + 2 * S)
    stage.committed(Changes(meta={}), metrics)
    assert metrics.template_errors.labels("stdout", "text")._value.get() == 2


def _with(rendered: dict[str, str]) -> Notification:
    return Notification(**{**{f: getattr(SAMPLE, f) for f in SAMPLE.__dataclass_fields__}, "rendered": rendered})


def test_each_sink_uses_its_templates() -> None:
    """Slack: title in the header, text as the one section and the fallback; Discord: text as content; Telegram:
    text as the message; email: subject, text and html parts; PagerDuty: summary of every trigger event."""
    note = _with({"title": "T!", "text": "*body*", "subject": "S!", "html": "<p>H</p>", "summary": "  sum\nmary "})
    cfg = slack.SlackConfig.model_validate({"webhook_url": "https://hooks.slack.com/x", "title": "x", "text": "y"})
    payload = slack.render(note, cfg)
    assert payload["blocks"][0]["text"]["text"].endswith("T!")
    assert payload["blocks"][1] == {"type": "section", "text": {"type": "mrkdwn", "text": "*body*"}}
    assert payload["text"] == "*body*"
    assert (
        discord.render(
            note, discord.DiscordConfig.model_validate({"webhook_url": "https://discord.com/api/webhooks/1/x"})
        )["content"]
        == "*body*"
    )
    assert telegram.render(note) == "*body*"
    message = email.build_message(
        note,
        email.EmailConfig.model_validate(
            {"to": ["a@example.com"], "from": "s@example.com", "smarthost": "localhost:25"}
        ),
    )
    assert message["Subject"] == "S!"
    parts = {p.get_content_type(): p.get_content().strip() for p in message.iter_parts()}
    assert parts == {"text/plain": "*body*", "text/html": "<p>H</p>"}
    sink = pagerduty.PagerdutySink(pagerduty.PagerdutyConfig.model_validate({"routing_key": "k" * 32}))
    assert sink._trigger(note.alerts[0], note)["payload"]["summary"] == "sum mary"
    # without templates: each sink's own format
    assert "HighErrorRate" in slack.render(SAMPLE, cfg)["blocks"][0]["text"]["text"]
    assert sink._trigger(SAMPLE.alerts[0], SAMPLE)["payload"]["summary"].startswith("HighErrorRate: 5xx")


async def test_slack_receives_the_rendered_message_over_http(tmp_path: Path) -> None:
    """End to end: a macro from a templates file renders the title a real HTTP request to Slack carries."""
    files = _files(tmp_path, **{"common.j2": MACROS})
    async with serve(Vendor(lambda path, headers, body: [])) as hook:
        cfg = _config(
            {"webhook_url": f"{hook.url}/slack", "title": "{{ slack_title() }}", "text": "{{ labels(Alerts[0]) }}"},
            kind="slack",
            templates=[str(p) for p in files],
        )
        notifier = Notifier(cfg)
        [note] = notifier.step([fire(T0, host="a")], T0 + S).outbox
        sink = slack.SlackSink(cfg.receivers[0].sinks[0][2])  # type: ignore[arg-type]
        async with aiohttp.ClientSession() as http:
            await sink.send(note, http)
    [request] = hook.requests
    assert request.body["blocks"][0]["text"]["text"].endswith("[FIRING:1] db_errors")
    assert request.body["blocks"][1]["text"]["text"] == "alertname=db_errors host=a severity=warning"


def test_check_renders_every_template_and_names_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`check --config` renders each sink's templates against a sample notification: a failing one is reported
    with the config file, receiver, sink, field and the template file and line; good ones pass."""
    (tmp_path / "common.j2").write_text(MACROS, encoding="utf-8")
    body = """\
templates: ["*.j2"]
route: {receiver: team}
receivers:
  - name: team
    stdout_configs:
      - {title: "{{ slack_title() }}", text: "{{ broken() }}"}
"""
    config = write_config(tmp_path, body)
    assert main(["check", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert (
        f"{config}: receivers: team: stdout_configs.0.text: UndefinedError: 'Nope' is undefined (in common.j2, line 3)"
    ) in err
    assert "title" not in err
    config.write_text(config.read_text(encoding="utf-8").replace("{{ broken() }}", "{{ labels(Alerts[0]) }}"))
    assert main(["check", "--config", str(config)]) == 0


def test_a_broken_templates_file_fails_check_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The `templates:` files are compiled when the config loads (check, start, reload): a syntax error is
    reported with the file and line, and nothing starts."""
    (tmp_path / "bad.j2").write_text("{% macro x() %}\n{% endfor %}\n", encoding="utf-8")
    config = write_config(tmp_path, 'templates: ["bad.j2"]\nroute: {receiver: team}\nreceivers: [{name: team}]\n')
    assert main(["check", "--config", str(config)]) == 1
    assert f"{config}: templates: bad.j2: line 2: " in capsys.readouterr().err


README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_idiom_table_renders() -> None:
    """Every Jinja2 cell of the README's Alertmanager idiom table renders against the sample notification (with
    `a` one of its alerts), so the translations are ones that work."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| Alertmanager (Go template) | streamalert (Jinja2) |") :].split("\n\n")[0]
    rows = [row.strip() for row in table.splitlines()[2:] if row.strip().startswith("|")]
    cells = [row.strip("|").split(" | ")[1] for row in rows]
    sources = [code for cell in cells for code in re.findall(r"`([^`]+)`", cell.replace("\\|", "|")) if "{" in code]
    templates = Templates()
    values = {**DATA, "a": DATA["Alerts"][0], "slack_title": lambda: "macro"}
    rendered = {}
    for source in sources:
        if "{% macro" in source:
            continue  # a definition: test_template_files_define_macros_every_template_can_call covers it
        rendered[source] = templates.render(source.replace("…", "x"), values)
    assert len(rendered) >= 12
    assert rendered["{{ Alerts.Firing|length }}"] == "1"
    assert rendered['{{ reReplaceAll("(.+):.*", "$1", a.Labels.instance) }}'] == "db-1"
    assert rendered["{{ slack_title() }}"] == "macro"
