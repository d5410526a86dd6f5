"""The HTTP listener: operational endpoints (`/healthz`, `/readyz`, `/metrics`) plus routes mounted by the caller.

- `GET /healthz`: 200 `{"status": "ok"}` while the process serves requests; no dependency is checked.
- `GET /readyz`: asks the `readiness` callable; 200 `{"ready": true, "checks": {...}}` or
  503 `{"ready": false, "checks": {...}}`. The caller decides what the checks are (store, sources).
- `GET /metrics`: the Prometheus text exposition of a `Metrics`.

The Vector ingest route is not defined here: the composition root passes it in `routes`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from streamalert.telemetry.metrics import Metrics

Readiness = Callable[[], Awaitable[tuple[bool, dict[str, str]]]]

METRICS_KEY = web.AppKey("metrics", Metrics)
READINESS_KEY: web.AppKey[Readiness] = web.AppKey("readiness")


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    ready, checks = await request.app[READINESS_KEY]()
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS_KEY].render()
    # aiohttp refuses a content type with parameters in `content_type=`; set the header whole.
    return web.Response(body=body, headers={"Content-Type": content_type})


def build_app(
    metrics: Metrics,
    readiness: Readiness,
    routes: Sequence[web.RouteDef] = (),
    source: str = "http",
    api: Sequence[web.RouteDef] = (),
) -> web.Application:
    """An application serving the operational endpoints, a source's ingest `routes` (their answers are
    counted in `http_requests_total{source, code}`) and the `api` routes (silences, history)."""
    counted = {route.path for route in routes}

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in counted:
            return await handler(request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.http_requests.labels(source, str(exc.status)).inc()
            raise
        metrics.http_requests.labels(source, str(response.status)).inc()
        return response

    app = web.Application(middlewares=[count])
    app[METRICS_KEY] = metrics
    app[READINESS_KEY] = readiness
    app.add_routes(
        [
            web.get("/healthz", _healthz, allow_head=True),
            web.get("/readyz", _readyz, allow_head=True),
            web.get("/metrics", _metrics, allow_head=True),
            *routes,
            *api,
        ]
    )
    return app


async def start_server(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` on host:port; the returned runner's `cleanup()` stops it."""
    runner = web.AppRunner(
        app, access_log=None, auto_decompress=False
    )  # the Vector source inflates with its own limits
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def parse_listen(text: str) -> tuple[str, int]:
    """Split a listen address: "127.0.0.1:8080", "[::1]:8080", ":8080" (all interfaces, "0.0.0.0").

    Raises ValueError naming the text when it has no port, a port outside 1..65535 or a malformed host.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"listen address {text!r}: expected HOST:PORT, [IPv6]:PORT or :PORT")
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")) or len(host) < 3:
            raise ValueError(f"listen address {text!r}: malformed [IPv6] host")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"listen address {text!r}: write an IPv6 host in brackets, as [::1]:8080")
    elif not host:
        host = "0.0.0.0"  # ":PORT" means every interface
    if any(c.isspace() for c in host):
        raise ValueError(f"listen address {text!r}: malformed host")
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"listen address {text!r}: port must be a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"listen address {text!r}: port must be in 1..65535")
    return host, port
