"""`streamalert check --config` over the Opsgenie, Teams and apprise sinks as an operator writes them: the key
from the environment, URLs in files, errors naming receiver and key and never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamalert.cli import main
from tests.notify.test_apprise import TOKEN as APPRISE_TOKEN
from tests.notify.test_msteamsv2 import PATH as TEAMS_PATH
from tests.notify.test_msteamsv2 import QUERY as TEAMS_QUERY
from tests.notify.test_msteamsv2 import SIG as TEAMS_SIG
from tests.notify.test_notify_cli import write_config
from tests.notify.test_opsgenie import API_KEY

CHANNELS = """
route:
  receiver: ops
receivers:
  - name: ops
    opsgenie_configs:
      - api_key: "${OPSGENIE_KEY}"
        api_url: https://api.eu.opsgenie.com/
        responders: [{name: sre, type: team}]
        tags: prod,api
        priorities: {warning: P2}
    msteamsv2_configs: [{webhook_url_file: TEAMS_FILE}]
    apprise_configs: [{url_file: APPRISE_FILE}]
"""


def channels(tmp_path: Path, apprise_url: str) -> Path:
    teams = tmp_path / "teams-url"
    teams.write_text(f"https://prod-00.westeurope.logic.azure.com{TEAMS_PATH}{TEAMS_QUERY}\n", "utf-8")
    apprise = tmp_path / "apprise-url"
    apprise.write_text(apprise_url + "\n", "utf-8")
    body = CHANNELS.replace("TEAMS_FILE", str(teams)).replace("APPRISE_FILE", str(apprise))
    return write_config(tmp_path, body)


def no_secret(text: str) -> None:
    for secret in (API_KEY, TEAMS_SIG, APPRISE_TOKEN):
        assert secret not in text, (secret, text)


def test_check_accepts_the_new_sinks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config with one sink of each new kind passes `check` and counts them; nothing secret is printed."""
    monkeypatch.setenv("OPSGENIE_KEY", API_KEY)
    config = channels(tmp_path, f"gchat://workspace/key/{APPRISE_TOKEN}")
    assert main(["check", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert "1 receivers with 3 sinks" in captured.out
    no_secret(captured.out + captured.err)


def test_check_refuses_an_apprise_url_apprise_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown Apprise scheme fails `check` naming the receiver, the sink and the key, not the URL."""
    monkeypatch.setenv("OPSGENIE_KEY", API_KEY)
    config = channels(tmp_path, f"nosuchservice://{APPRISE_TOKEN}")
    assert main(["check", "--config", str(config)]) != 0
    err = capsys.readouterr().err
    assert "ops: apprise_configs.0: url_file: Apprise cannot use this URL (scheme 'nosuchservice'" in err
    no_secret(err)
