"""The web UI in headless Chromium (tests/ui/browser.py) against the running streamalert: what a browser
without a session sees, logging in by the token, the pages, and silences created and expired from the UI.

Forms are filled and submitted in the browser (DevTools protocol), not posted by the test: the cookie flags,
the CSRF tokens in the forms and the redirects are exercised as a user's browser meets them.
"""

from __future__ import annotations

import pytest

from tests.ui.browser import Browser, Page
from tests.ui.service import TOKEN, Service, until

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the shared service's and browser's loop

PAGES = ["/", "/silences", "/silences/new", "/rules", "/notifications"]


async def login(browser: Browser, service: Service) -> Page:
    page = await browser.page()
    await page.goto(service.url + "/")
    assert await page.path() == "/login"
    await page.fill("#token", TOKEN)
    await page.click("#login button")
    assert await page.path() == "/"
    return page


async def test_an_unauthenticated_browser_sees_only_the_login_page(browser: Browser, service: Service) -> None:
    """Every page redirects to /login, which shows no alert data; a wrong token is refused there, and the
    token typed is not echoed back."""
    await service.post([{"level": "error", "host": "anon-1"}])
    await until(lambda: ("anon-1", "firing") in service.notified_hosts(), 15, "anon-1 to be notified")
    page = await browser.page()
    for path in PAGES:
        await page.goto(service.url + path)
        assert await page.path() == "/login", path
        html = await page.html()
        assert 'id="login"' in html
        assert "anon-1" not in html
        assert "db_errors" not in html
    await page.fill("#token", "wrong-token-1234")
    await page.click("#login button")
    assert await page.path() == "/login"
    assert await page.texts("#error") == ["Wrong token."]
    assert "wrong-token-1234" not in await page.html()
    assert [c["name"] for c in await page.cookies() if c["name"] == "streamalert_session"] == []


async def test_pages_render_after_login(browser: Browser, service: Service) -> None:
    """After login (an HttpOnly, SameSite=Strict session cookie that scripts cannot read): the alerts page
    lists the firing alert with its labels, value, summary and https runbook link (a javascript: one is not a
    link, markup in annotations is text), and the resolved one; rules show live series and last transition;
    notifications show the deliveries as sent."""
    await service.post([{"level": "error", "host": "page-1"}, {"level": "slow", "host": "page-2"}])
    await until(lambda: ("page-2", "resolved") in service.notified_hosts(), 15, "page-2 to fire and resolve")
    page = await login(browser, service)
    (session,) = [c for c in await page.cookies() if c["name"] == "streamalert_session"]
    assert (session["httpOnly"], session["sameSite"]) == (True, "Strict")
    assert TOKEN not in session["value"]
    assert await page.evaluate("document.cookie") == ""

    rows = {text.split()[1]: text for text in await page.texts("#firing tr.alert") if "page-" in text}
    assert set(rows) == {"db_errors"}, rows  # since, alertname, ...
    assert 'host="page-1"' in rows["db_errors"]
    assert "database errors on page-1" in rows["db_errors"]
    assert "active" in rows["db_errors"]
    links = await page.evaluate("[...document.querySelectorAll('a.runbook')].map(a => a.href)")
    assert set(links) == {"https://runbooks.example.com/db_errors"}
    resolved = [text for text in await page.texts("#resolved tr.alert") if 'host="page-2"' in text]
    assert len(resolved) == 1
    assert "<b>slow</b> queries on page-2" in resolved[0]  # shown as typed, not as markup
    assert "runbook_url: javascript:alert(1)" in resolved[0]
    assert await page.evaluate("document.querySelectorAll('b').length") == 0

    await page.goto(service.url + "/rules")
    rules = {text.split()[0]: text.split() for text in await page.texts("#rules tr.rule")}
    assert set(rules) == {"db_errors", "db_slow"}
    assert int(rules["db_errors"][2]) >= 1  # live series: page-1 at least
    assert rules["db_slow"][3] == "resolved" or rules["db_slow"][3] == "firing"
    await page.goto(service.url + "/notifications")
    sent = [text for text in await page.texts("#sent tr.notification") if "team / webhook/0" in text]
    assert sent
    assert all(" sent " in text for text in sent)


async def test_a_silence_created_in_the_ui_mutes_a_notification(browser: Browser, service: Service) -> None:
    """A silence typed into the form (after a refused matcher, whose text the form kept) mutes the alert that
    fires next while its twin is notified; the alert page marks it silenced; "Silence" on an alert's row
    pre-fills its labels; expiring the silence from the list lets the muted notification out."""
    page = await login(browser, service)
    await page.goto(service.url + "/silences/new")
    await page.fill("#matchers", 'host=="ui-mute"')
    await page.fill("#comment", "maintenance <window>")
    await page.click("#create")
    assert await page.path() == "/silences"  # the refused form answers in place (400), keeping the input
    assert "matchers" in (await page.texts("#error"))[0]
    assert await page.evaluate("document.querySelector('#matchers').value") == 'host=="ui-mute"'
    assert await page.evaluate("document.querySelector('#comment').value") == "maintenance <window>"
    await page.fill("#matchers", 'host="ui-mute"')
    await page.click("#create")
    assert await page.path() == "/silences"
    (row,) = [text for text in await page.texts("#silences tr.silence") if "ui-mute" in text]
    assert "maintenance <window>" in row
    assert "active" in row

    await service.post([{"level": "error", "host": "ui-mute"}, {"level": "error", "host": "ui-loud"}])
    await until(lambda: ("ui-loud", "firing") in service.notified_hosts(), 15, "ui-loud to be notified")
    assert ("ui-mute", "firing") not in service.notified_hosts()  # decided in the same flush, and muted
    await page.goto(service.url + "/")
    status = {t.split()[2] + " " + t: t for t in await page.texts("#firing tr.alert") if 'host="ui-mute"' in t}
    assert len(status) == 1
    assert "silenced" in next(iter(status.values()))

    # "Silence" on the ui-loud row: the form comes pre-filled with that alert's labels
    await page.click("#firing tr.alert:has(a[href*='ui-loud']) a.silence")
    assert await page.path() == "/silences/new"
    prefilled = await page.evaluate("document.querySelector('#matchers').value")
    assert prefilled.splitlines() == ['alertname="db_errors"', 'host="ui-loud"', 'severity="critical"', 'team="db"']

    await page.goto(service.url + "/silences")
    rows = "[...document.querySelectorAll('#silences tr.silence')]"
    (silence_id,) = await page.evaluate(f"{rows}.filter(r => r.innerText.includes('ui-mute')).map(r => r.dataset.id)")
    await page.click(f'#silences tr.silence[data-id="{silence_id}"] button.expire')
    assert await page.path() == "/silences"
    assert [text for text in await page.texts("#silences tr.silence") if "ui-mute" in text] == []
    await until(lambda: ("ui-mute", "firing") in service.notified_hosts(), 15, "ui-mute to be notified once unmuted")
