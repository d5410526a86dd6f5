"""The sink registry: the built-in table, and a third party's sink found through the `streamalert.sinks`
entry-point group of an installed distribution (a real dist-info folder on sys.path, as pip leaves one)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamalert.config.notify import NotifyConfig
from streamalert.notify.sender import build_sinks
from streamalert.notify.sinks import BUILTIN, registry
from streamalert.notify.sinks.base import SinkKind

PLUGIN = """
from pydantic import SecretStr

from streamalert.notify.sinks.base import SinkConfig, SinkKind


class ZulipConfig(SinkConfig):
    api_key: SecretStr
    priority: str = "P3"


class ZulipSink:
    def __init__(self, config: ZulipConfig) -> None:
        self.config = config

    async def send(self, notification, http) -> None:
        raise NotImplementedError


KIND = SinkKind("zulip", ZulipConfig, ZulipSink)
"""


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Iterator[None]:
    (tmp_path / "streamalert_zulip.py").write_text(PLUGIN)
    dist = tmp_path / "streamalert_zulip-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: streamalert-zulip\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[streamalert.sinks]\nzulip = streamalert_zulip:KIND\nslack = streamalert_zulip:KIND\n"
    )
    sys.path.insert(0, str(tmp_path))
    registry.cache_clear()
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("streamalert_zulip", None)
        registry.cache_clear()


def test_every_builtin_sink_is_in_the_table() -> None:
    assert sorted(BUILTIN) == [
        "alertmanager", "apprise", "discord", "email", "msteamsv2", "opsgenie", "pagerduty", "slack", "stdout",
        "telegram", "webhook",
    ]  # fmt: skip
    for name, kind in BUILTIN.items():  # each imported on first use: the table names its module rightly
        assert isinstance(kind, SinkKind)
        assert kind.name == name


def test_a_third_party_sink_is_found_through_its_entry_point(installed_plugin: None) -> None:
    kinds = registry()
    assert kinds["zulip"].name == "zulip"
    assert kinds["slack"] is BUILTIN["slack"]  # a package cannot replace a built-in sink
    config = NotifyConfig.model_validate(
        {
            "route": {"receiver": "ops"},
            "receivers": [{"name": "ops", "zulip_configs": [{"api_key": "k3y", "priority": "P1"}]}],
        }
    )
    sinks = build_sinks(config)
    assert list(sinks) == [("ops", "zulip/0")]
    assert type(sinks[("ops", "zulip/0")]).__name__ == "ZulipSink"


def test_a_third_party_sink_config_is_validated_by_its_own_class(installed_plugin: None) -> None:
    with pytest.raises(ValueError, match=r"zulip_configs.0.api_key: Field required"):
        NotifyConfig.model_validate(
            {"route": {"receiver": "ops"}, "receivers": [{"name": "ops", "zulip_configs": [{}]}]}
        )


def test_without_the_package_the_key_is_unknown() -> None:
    with pytest.raises(ValueError, match=r"zulip_configs: unknown key"):
        NotifyConfig.model_validate(
            {"route": {"receiver": "ops"}, "receivers": [{"name": "ops", "zulip_configs": [{}]}]}
        )
