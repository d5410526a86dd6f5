"""The notification routes the service mounts on its listener when a route tree is configured: the plain API
(notify/api.py), Alertmanager's API v2 (notify/amapi.py) and the web UI (ui/web.py), all behind
notify.api_token. Config silences and inhibit rules are those of the config at start, as for the plain API."""

from __future__ import annotations

import yaml
from aiohttp import web

from streamalert.clock import Clock
from streamalert.config.app import AppConfig
from streamalert.notify import amapi
from streamalert.notify import api as notify_api
from streamalert.notify.notifier import Notifier
from streamalert.notify.view import NotifyView
from streamalert.state.base import Store
from streamalert.ui import web as ui_web
from streamalert.ui.web import RuleStats


def notify_routes(config: AppConfig, store: Store, clock: Clock, rules: RuleStats | None) -> list[web.RouteDef]:
    if config.route is None:
        return []
    behind = config.ms("lateness") + config.ms("max_delay")  # notification (event) time behind the wall clock
    notifier = Notifier(config)
    token = config.notify.token()
    view = NotifyView(store, clock, notifier.config_silences, behind, notifier.inhibit_rules)
    return [
        *notify_api.routes(store, clock, token, notifier.config_silences, behind),
        *amapi.routes(view, token, list(notifier.receivers), config_text(config)),
        *ui_web.routes(view, token, rules),
    ]


def config_text(config: AppConfig) -> str:
    """What /api/v2/status shows as the config: the route tree and the receivers' names, never their settings
    (URLs, keys and tokens live there)."""
    route = {} if config.route is None else config.route.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    receivers = [{"name": spec.name} for spec in config.receivers]
    return yaml.safe_dump({"route": route, "receivers": receivers}, sort_keys=False)
