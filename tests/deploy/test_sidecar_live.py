"""The sidecar pod without Kubernetes: streamalert started exactly as its container is (args, environment,
mounted config, rules and secret files), a real redis-server in place of the `redis` Service, and a body
built as the pod's Vector sends it (deploy/vector/sidecar.toml: NDJSON, gzip, bearer token from the shared
Secret) of demo-app lines after the identity transform. The alert comes out on stdout."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from streamalert.clock import WallClock
from streamalert.decode import format_ms
from streamalert.testing import free_port
from tests.deploy.deploy_files import (
    DEPLOY,
    container_view,
    containers,
    env_of,
    load_kustomization,
    pod_specs,
    secret_values,
    vector_configs,
)
from tests.deploy.vector_identity import deliver
from tests.unit.cli_process import clean_env, console_script

pytestmark = pytest.mark.redis


# The shipped config's lateness (30 s) and max_delay (10 s): a line stamped now fires 40 s after it arrives.
# Stamped this far back, it fires 10 s after (the post must arrive within those 10 s, or the line is late).
_STAMPED_AGO_MS = 30_000


def _error_line() -> str:
    """The demo app's celery_worker error as the app writes it, stamped _STAMPED_AGO_MS ago."""
    return json.dumps(
        {
            "timestamp": format_ms(WallClock().now_ms() - _STAMPED_AGO_MS),
            "level": "error",
            "logger": "mailer.ratelimit",
            "event": "Error reserving rate limit token (Redis unavailable), allowing send (fail-open)",
            "error_type": "rate_limiter_backend_error",
            "policy": "fail_open",
        }
    )


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`streamalert ARGS` with the container's environment (and none of the test runner's config variables)."""
    return subprocess.Popen(
        [*console_script(), *args], env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def _wait_ready(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):  # poll with a deadline (30 s): start-up on a loaded machine
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the sidecar's streamalert was not ready within 30 s")


async def test_sidecar_streamalert_takes_vectors_batch_and_alerts(tmp_path: Path, redis_url: str) -> None:
    """The sidecar's streamalert answers 401 without the token and 200 to Vector's gzip NDJSON batch with it,
    then prints mailer_rate_limiter_redis_error firing (app: crm added by the transform); SIGTERM stops it."""
    kust = load_kustomization(DEPLOY)
    (spec,) = [spec for name, spec in pod_specs(kust.resources) if name == "crm-beat"]
    by_name = {c["name"]: c for c in containers(spec)}
    container, vector = by_name["streamalert"], by_name["vector"]
    root, env = container_view(tmp_path / "pod", kust, spec, container)
    port = free_port()
    config = root / "etc/streamalert/streamalert.yaml"
    # the one change: a free loopback port instead of the pod's 0.0.0.0:8080 (tests run side by side)
    text = config.read_text(encoding="utf-8")
    assert 'listen: "0.0.0.0:8080"' in text
    config.write_text(text.replace('listen: "0.0.0.0:8080"', f'listen: "127.0.0.1:{port}"'), encoding="utf-8")
    env["STREAMALERT_STATE"] = env["STREAMALERT_STATE"].replace("redis://redis:6379/0", redis_url)
    env["STREAMALERT_SECRETS"] = str(root / "run/secrets/streamalert")  # the mount, under the test's root
    args = container["args"]
    proc = _start([*args[:-1], str(root / args[-1].lstrip("/"))], env)
    try:
        sink = vector_configs()["sidecar.toml"]["sinks"]["streamalert"]
        path = urlsplit(sink["uri"]).path
        token_ref = env_of(vector)["STREAMALERT_TOKEN"]["valueFrom"]["secretKeyRef"]
        token = secret_values(kust)[(token_ref["name"], token_ref["key"])]
        vector_env = {k: v["value"] for k, v in env_of(vector).items() if "value" in v}
        assert sink["framing"]["method"] == "newline_delimited"
        assert sink["compression"] == "gzip"
        headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
        async with aiohttp.ClientSession() as session:
            # before /readyz, posts get 503 with Retry-After (state loading, lease): Vector retries those
            await _wait_ready(session, f"http://127.0.0.1:{port}/readyz", proc)
            event = deliver(
                _error_line(), path="/var/log/app/celery_worker.log", host="crm-beat-0", read_at="", env=vector_env
            )
            body = gzip.compress(orjson.dumps(event) + b"\n")
            async with session.post(f"http://127.0.0.1:{port}{path}", data=body, headers=headers) as response:
                assert response.status == 401
            headers["Authorization"] = f"Bearer {token}"
            async with session.post(f"http://127.0.0.1:{port}{path}", data=body, headers=headers) as response:
                assert response.status == 200  # committed to the Redis state
        assert proc.stdout is not None
        # blocking read: the transition comes once lateness + max_delay of the shipped config (40 s) have
        # passed since the line's stamp (see _STAMPED_AGO_MS); the test's timeout bounds it
        transition = orjson.loads(proc.stdout.readline())
        assert transition["rule"] == "mailer_rate_limiter_redis_error"
        assert transition["state"] == "firing"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
