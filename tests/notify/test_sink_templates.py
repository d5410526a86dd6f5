"""Message templates in the opsgenie, msteamsv2 and apprise sinks, end to end: the notifier renders a sink's
templates and the sink's real HTTP request to its vendor stand-in (each checked against the vendor's documented
format) carries them where Alertmanager's own config for that vendor puts them (Opsgenie `message` and
`description`, Teams `title` and `text`, Apprise title and body); a failing template falls back to the sink's own
format and is counted; a template the sink does not read is refused by `check`, naming receiver and field."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import orjson
import pytest

from streamalert.cli import main
from streamalert.config.notify import NotifyConfig
from streamalert.notify.notifier import Notifier
from streamalert.notify.sinks import build_sinks, msteamsv2, opsgenie
from streamalert.notify.templates import MAX_OUTPUT
from tests.notify import test_apprise as apprise_tests
from tests.notify import test_msteamsv2 as msteamsv2_tests
from tests.notify import test_opsgenie as opsgenie_tests
from tests.notify.test_dispatch_timelines import T0, S, fire
from tests.notify.test_notify_cli import write_config
from tests.notify.vendor import Validator, Vendor, serve

TITLE = "{{ Status|toUpper }} {{ GroupLabels.alertname }} on {{ Alerts|map(attribute='Labels.host')|join(',') }}"
TEXT = "{% for a in Alerts %}* {{ a.Labels.host }} is {{ a.Status }}\n{% endfor %}Runbook: **see wiki**"
RENDERED_TITLE = "FIRING db_errors on a"
RENDERED_TEXT = "* a is firing\nRunbook: **see wiki**"
BROKEN = "{{ Nope.x }}"


@dataclass(frozen=True)
class Case:
    kind: str
    config: Callable[[str], dict[str, Any]]  # the vendor's base URL -> the sink's config
    validator: Validator
    ok_body: Any
    title: Callable[[Any], str]  # the request body -> where the title went
    text: Callable[[Any], str]  # the request body -> where the text went


def _teams_texts(body: Any) -> list[str]:
    return msteamsv2_tests.texts(msteamsv2_tests.card(body))


def _unescaped(text: str) -> str:
    """The heading's text as shown: the sink escapes it as plain text (`db\\_errors` shows `db_errors`)."""
    return re.sub(r"\\(.)", r"\1", text)


CASES = [
    Case(
        "opsgenie",
        lambda url: {"api_key": opsgenie_tests.API_KEY, "api_url": url},
        opsgenie_tests.conformance_validator,
        opsgenie_tests.OG_OK,
        lambda body: body["message"],
        lambda body: body["description"],
    ),
    Case(
        "msteamsv2",
        lambda url: {"webhook_url": url + msteamsv2_tests.PATH + msteamsv2_tests.QUERY},
        msteamsv2_tests.conformance_validator,
        None,
        lambda body: _unescaped(_teams_texts(body)[0]),  # the heading, plain text
        lambda body: _teams_texts(body)[1],  # the one block after it
    ),
    Case(
        "apprise",
        lambda url: {"url": apprise_tests.json_url(url)},
        apprise_tests.conformance_validator,
        None,
        lambda body: body["title"],
        lambda body: body["message"],
    ),
]


@pytest.fixture(params=CASES, ids=[c.kind for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    chosen: Case = request.param
    return chosen


def _notify_config(case: Case, url: str, **templates: str) -> NotifyConfig:
    route = {"receiver": "oncall", "group_by": ["alertname"], "group_wait": "0s"}
    sink = {**case.config(url), **templates}
    return NotifyConfig.model_validate(
        {"route": route, "receivers": [{"name": "oncall", f"{case.kind}_configs": [sink]}]}
    )


async def _deliver(case: Case, **templates: str) -> tuple[Any, dict[tuple[str, str], int]]:
    """Fire one alert through a notifier with these templates; send its notification with the built sink to the
    vendor stand-in. (The accepted request's body, the notifier's template error counts.)"""
    async with serve(Vendor(case.validator, ok_body=case.ok_body)) as vendor:
        config = _notify_config(case, vendor.url, **templates)
        notifier = Notifier(config)
        [note] = notifier.step([fire(T0, host="a")], T0 + S).outbox
        [sink] = build_sinks(config).values()
        async with aiohttp.ClientSession() as http:
            await sink.send(note, http)
    [request] = vendor.requests
    assert request.problems == []
    return request.body, notifier.counts.template_errors


async def test_templates_reach_the_vendor(case: Case) -> None:
    """The rendered title and text are in the vendor's payload where Alertmanager's config for it puts them."""
    body, errors = await _deliver(case, title=TITLE, text=TEXT)
    assert errors == {}
    assert case.title(body) == RENDERED_TITLE
    assert case.text(body) == RENDERED_TEXT


async def test_a_failing_template_falls_back_and_is_counted(case: Case) -> None:
    """A template that fails to render leaves the sink's own title and text in the payload, counted per field."""
    default, _ = await _deliver(case)
    body, errors = await _deliver(case, title=BROKEN, text=BROKEN)
    assert errors == {(case.kind, "title"): 1, (case.kind, "text"): 1}
    assert case.title(body) == case.title(default)
    assert case.text(body) == case.text(default)
    assert "db_errors" in case.title(body)


def test_opsgenie_message_is_one_line_cut_to_130() -> None:
    """Opsgenie's message from the title template: whitespace folded onto one line, cut to the API's 130."""
    note = opsgenie_tests.make_notification(opsgenie_tests.make_alert())
    assert opsgenie.templated_message(replace(note, rendered={"title": "a\n  b "})) == "a b"
    assert opsgenie.templated_message(replace(note, rendered={"title": "x" * 500})) == "x" * 129 + "…"
    assert opsgenie.templated_message(note) == ""  # no template: each alert's own message


def test_teams_text_is_cut_to_fit_the_card_limit() -> None:
    """A Teams text template as long as a template may render still makes a card under the size limit, and the
    alerts the notification left out are still counted."""
    note = msteamsv2_tests.make_notification(msteamsv2_tests.make_alert(), truncated=3)
    card = msteamsv2.render(replace(note, rendered={"text": "é" * (MAX_OUTPUT - 1)}))
    assert msteamsv2.MAX_CARD_BYTES - 2 <= len(orjson.dumps(card)) <= msteamsv2.MAX_CARD_BYTES  # the longest cut
    texts = _teams_texts(card)
    assert texts[1].endswith("é…")
    assert len(texts[1]) > msteamsv2.MAX_CARD_BYTES // 2 - 1000  # cut to fit, not to nothing (é is 2 bytes)
    assert texts[2] == "_and 3 more_"


@pytest.mark.parametrize("field", ["subject", "html", "summary"])
def test_a_template_the_sink_does_not_read_is_refused(
    case: Case, field: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` refuses a template field the sink ignores, naming the receiver, the sink and the field, and the
    fields it does read; the secret in the same sink config is not echoed."""
    sink = {**case.config("https://vendor.example"), field: "{{ Status }}"}
    lines = "\n".join(f"        {k}: {v!r}" for k, v in sink.items())
    body = f"route: {{receiver: oncall}}\nreceivers:\n  - name: oncall\n    {case.kind}_configs:\n      -\n{lines}\n"
    config = write_config(tmp_path, body)
    assert main(["check", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert (
        f"oncall: {case.kind}_configs.0: {field}: not a template this sink uses (templates it uses: title, text)" in err
    )
    secret = next(v for k, v in sink.items() if k in {"api_key", "webhook_url", "url"})
    assert secret not in err
