"""Replay throughput benchmark: the shipped rule pack over synthetic structlog lines, against parse-only.

Run by hand, never in CI:

    python bench/replay_bench.py [--lines N] [--redis | --redis-url URL | --no-redis] [--profile]

The input is generated deterministically (fixed seed) and cached under bench/data/. Lines are read into
memory once; the timings cover only parsing (baseline) and the production replay path
(`streamalert.pipeline.run` over a `ListSource`), never file I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import cProfile
import gc
import os
import pstats
import random
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a plain script from a checkout, installed or not

from streamalert.clock import Stopwatch  # noqa: E402
from streamalert.config.rules import Rule, load_rules  # noqa: E402
from streamalert.engine import Engine, tune_collector  # noqa: E402
from streamalert.model import Transition  # noqa: E402
from streamalert.pipeline import RunSummary, run  # noqa: E402
from streamalert.state.base import Store  # noqa: E402
from streamalert.state.memory import MemoryStore  # noqa: E402
from streamalert.state.redis import RedisStore  # noqa: E402
from streamalert.testing import CapturingSink, ListSource, redis_server  # noqa: E402

DATA_DIR = ROOT / "bench" / "data"
RULES_DIR = ROOT / "config" / "rules"
DEFAULT_LINES = 1_000_000
BATCH_LINES = 4096
SEED = 20240514
GENERATOR_VERSION = 2  # bump whenever the generator's output changes, so stale cached files are not reused

TARGET_MEMORY = 0.6  # issue "Fast at real scale"
TARGET_REDIS = 0.5
PARSE_RUNS = 3
REPLAY_RUNS = 2

# ---- synthetic log stream ----------------------------------------------------------------------------------
#
# Event time advances as a Poisson process of LINES_PER_SECOND, so 1,000,000 lines span about 3 hours and
# the per-minute dynamics (incident rates against rule thresholds) are the same for any --lines. Rule
# traffic is a low background plus incidents that repeat every CYCLE_S with jittered offsets; celery_beat
# logs every BEAT_EVERY_MS except during a beat outage. A few percent of lines arrive up to 2.5 s late (within
# the engine's 30 s lateness); a very few arrive minutes late and are dropped as late.

START_MS = 1_715_666_400_000  # 2024-05-14T06:00:00Z
LINES_PER_SECOND = 90.0
BEAT_EVERY_MS = 5_000
CYCLE_S = 2_700
SLIGHTLY_LATE = 0.03
VERY_LATE = 1 / 40_000

WEB_HOSTS = ("web-1", "web-2", "web-3", "web-4")
CRM_HOSTS = ("crm-app-1", "crm-app-2")
BEAT_TASKS = (
    "send_pending_emails (mailer.tasks.send_pending_emails)",
    "reconcile_campaign_queue (mailer.tasks.reconcile_campaign_queue)",
    "sync_smtp_bz_quota (mailer.tasks.sync_smtp_bz_quota)",
    "cleanup_expired_sessions (crm.tasks.cleanup_expired_sessions)",
)
REVEL_PATHS = (
    ("GET", "/api/events/"),
    ("GET", "/api/events/{id}/"),
    ("GET", "/api/events/{id}/tickets/"),
    ("POST", "/api/events/{id}/rsvp/"),
    ("GET", "/api/organizations/{id}/"),
    ("GET", "/api/me/"),
    ("POST", "/api/auth/token/refresh/"),
    ("POST", "/api/questionnaires/{id}/submit/"),
    ("GET", "/api/notifications/"),
    ("PATCH", "/api/me/preferences/"),
    ("POST", "/api/payments/checkout/"),
    ("GET", "/healthz/"),
)
CRM_PATHS = (
    ("GET", "/crm/contacts/"),
    ("GET", "/crm/contacts/{id}/"),
    ("GET", "/crm/campaigns/"),
    ("GET", "/crm/campaigns/{id}/stats/"),
    ("POST", "/crm/campaigns/{id}/send/"),
    ("POST", "/crm/contacts/import/"),
    ("GET", "/admin/mailer/campaignqueue/"),
)
TASK_NAMES = (
    "events.tasks.send_event_reminder",
    "notifications.tasks.deliver_push",
    "payments.tasks.reconcile_stripe_session",
    "questionnaires.tasks.evaluate_submission",
    "accounts.tasks.refresh_google_avatar",
)
FAILED_TASK_EVENTS = (
    "send_notification_task_failed",
    "generate_invoice_task_failed",
    "sync_calendar_task_failed",
    "deliver_push_task_failed",
)
DB_EVENTS = (
    ("database_connection_error", 'psycopg.OperationalError: connection to server at "db-primary" failed'),
    ("postgres_query_failed", "psycopg.errors.QueryCanceled: canceling statement due to statement timeout"),
    ("psycopg_pool_timeout", "psycopg_pool.PoolTimeout: couldn't get a connection after 30.00 sec"),
)
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/revel/api/views.py", line 214, in dispatch\n'
    "    return handler(request, *args, **kwargs)\n"
    '  File "/app/revel/events/services.py", line 88, in build_ticket_tiers\n'
    "    tier = tiers[ticket.tier_id]\n"
    "KeyError: 8123"
)

Record = dict[str, Any]
Builder = Callable[[random.Random, str, Any], Record]


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _path(rng: random.Random, template: str) -> str:
    return template.replace("{id}", str(rng.randint(1, 40_000))) if "{id}" in template else template


def _revel(event: str, level: str, logger: str, ts: str, **fields: Any) -> Record:
    # structlog's JSONRenderer keeps insertion order: event, bound context and keywords, then the processors'.
    return {"event": event, **fields, "service": "revel", "level": level, "logger": logger, "timestamp": ts}


def _crm(text: str, level: str, logger: str, container: str, ts: str, **fields: Any) -> Record:
    return {
        "event": text,
        **fields,
        "app": "crm",
        "container": container,
        "level": level,
        "logger": logger,
        "timestamp": ts,
    }


# -- noise ---------------------------------------------------------------------------------------------------


def _revel_http(rng: random.Random, ts: str, _: Any) -> Record:
    method, template = rng.choice(REVEL_PATHS)
    roll = rng.random()
    status = (
        200
        if roll < 0.86
        else 201
        if roll < 0.9
        else 304
        if roll < 0.93
        else 404
        if roll < 0.975
        else 403
        if roll < 0.995
        else 500
    )
    level = "error" if status >= 500 else "warning" if status >= 400 else "info"
    return _revel(
        "request_finished",
        level,
        "revel.middleware.request",
        ts,
        method=method,
        path=_path(rng, template),
        status=status,
        duration_ms=round(rng.lognormvariate(3.3, 0.7), 1),
        host=rng.choice(WEB_HOSTS),
        request_id=_uuid(rng),
        user_id=rng.randint(1, 250_000) if rng.random() < 0.7 else None,
        ip=f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
    )


def _crm_http(rng: random.Random, ts: str, _: Any) -> Record:
    method, template = rng.choice(CRM_PATHS)
    status = 200 if rng.random() < 0.96 else rng.choice((302, 400, 404))
    return _crm(
        "request_finished",
        "info" if status < 400 else "warning",
        "django.request",
        "django",
        ts,
        method=method,
        path=_path(rng, template),
        status=status,
        duration_ms=round(rng.lognormvariate(3.6, 0.6), 1),
        host=rng.choice(CRM_HOSTS),
        request_id=_uuid(rng),
    )


def _email_sent(rng: random.Random, ts: str, _: Any) -> Record:
    return _crm(
        "Email sent successfully",
        "info",
        "mailer.tasks",
        "celery_worker",
        ts,
        campaign_id=rng.randint(1200, 1260),
        recipient_id=rng.randint(1, 900_000),
        message_id=f"<{rng.getrandbits(64):016x}@smtp.bz>",
        duration_ms=round(rng.lognormvariate(5.0, 0.4), 1),
        task_id=_uuid(rng),
    )


def _task_succeeded(rng: random.Random, ts: str, _: Any) -> Record:
    return _revel(
        "task_succeeded",
        "info",
        "revel.celery",
        ts,
        task_name=rng.choice(TASK_NAMES),
        task_id=_uuid(rng),
        runtime_ms=round(rng.lognormvariate(4.5, 1.0), 1),
        worker=f"celery@worker-{rng.randint(1, 6)}",
    )


def _revel_misc(rng: random.Random, ts: str, _: Any) -> Record:
    roll = rng.random()
    user_id = rng.randint(1, 250_000)
    if roll < 0.3:
        return _revel("user_logged_in", "info", "revel.accounts", ts, user_id=user_id, method="password")
    if roll < 0.5:
        return _revel(
            "questionnaire_submitted",
            "info",
            "revel.questionnaires",
            ts,
            user_id=user_id,
            questionnaire_id=rng.randint(1, 900),
        )
    if roll < 0.65:
        return _revel(
            "questionnaire_llm_evaluation_started",
            "info",
            "revel.questionnaires",
            ts,
            questionnaire_id=rng.randint(1, 900),
            model="gpt-4o-mini",
        )
    if roll < 0.8:
        return _revel(
            "stripe_checkout_session_created",
            "info",
            "revel.payments",
            ts,
            user_id=user_id,
            session_id=f"cs_live_{rng.getrandbits(96):024x}",
            amount=rng.randint(500, 25_000),
        )
    if roll < 0.9:
        return _revel("otp_verification_succeeded", "info", "revel.accounts", ts, user_id=user_id)
    return _revel("password_reset_email_sent", "info", "revel.accounts", ts, user_id=user_id)


def _crm_misc(rng: random.Random, ts: str, _: Any) -> Record:
    roll = rng.random()
    if roll < 0.5:
        return _crm(
            "Rate limit token reserved",
            "debug",
            "mailer.rate_limit",
            "celery_worker",
            ts,
            campaign_id=rng.randint(1200, 1260),
            tokens_left=rng.randint(0, 100),
        )
    if roll < 0.75:
        return _crm(
            "Campaign queue reconciled",
            "info",
            "mailer.tasks",
            "celery_worker",
            ts,
            processing=rng.randint(0, 4),
            pending=rng.randint(0, 30),
        )
    if roll < 0.9:
        return _crm(
            "SMTP quota synced",
            "info",
            "mailer.quota",
            "celery_worker",
            ts,
            remaining=rng.randint(1000, 50_000),
        )
    return _crm(
        "Transient SMTP error, will retry",
        "warning",
        "mailer.smtp",
        "celery_worker",
        ts,
        campaign_id=rng.randint(1200, 1260),
        consecutive_errors=rng.randint(1, 3),
        smtp_code=421,
    )


def _near_miss(rng: random.Random, ts: str, _: Any) -> Record:
    # Lines that share fields or words with rules but must not match them.
    if rng.random() < 0.6:
        return _revel(
            "slow_database_query",
            "warning",
            "revel.db",
            ts,
            duration_ms=rng.randint(500, 4000),
            host=rng.choice(WEB_HOSTS),
            table=rng.choice(("events_event", "accounts_user")),
        )
    return _crm(
        "Throttle limit reached for action",
        "warning",
        "mailer.throttle",
        "django",
        ts,
        action=rng.choice(("send_campaign", "import_contacts")),
        error_type="throttle_limited",
    )


NOISE: tuple[tuple[float, Builder], ...] = (
    (0.46, _revel_http),
    (0.16, _crm_http),
    (0.18, _email_sent),
    (0.10, _task_succeeded),
    (0.06, _revel_misc),
    (0.035, _crm_misc),
    (0.005, _near_miss),
)

# -- lines the rule pack matches -----------------------------------------------------------------------------


def _beat(rng: random.Random, ts: str, _: Any) -> Record:
    return {
        "message": f"beat: Sending due task {rng.choice(BEAT_TASKS)}",
        "app": "crm",
        "container": "celery_beat",
        "level": "info",
        "logger": "celery.beat",
        "timestamp": ts,
    }


def _rate_limiter_error(rng: random.Random, ts: str, _: Any) -> Record:
    return _crm(
        "Error reserving rate limit token (Redis unavailable), allowing send (fail-open)",
        rng.choice(("error", "ERROR")),
        "mailer.rate_limit",
        "celery_worker",
        ts,
        error_type="rate_limiter_backend_error",
        policy="fail_open",
        campaign_id=rng.randint(1200, 1260),
        error="ConnectionError: Error 111 connecting to redis:6379. Connection refused.",
    )


def _throttle_error(rng: random.Random, ts: str, _: Any) -> Record:
    return _crm(
        "Throttle backend (Redis) unavailable for action",
        "error",
        "mailer.throttle",
        "django",
        ts,
        error_type="throttle_backend_error",
        policy="fail_closed",
        action=rng.choice(("send_campaign", "import_contacts", "export_contacts")),
        error="ConnectionError: Error 111 connecting to redis:6379. Connection refused.",
    )


def _stuck(rng: random.Random, ts: str, _: Any) -> Record:
    ids = sorted(rng.sample(range(1200, 1260), rng.randint(1, 3)))
    return _crm(
        "Stuck PROCESSING campaigns detected",
        "warning",
        "mailer.tasks",
        "celery_worker",
        ts,
        stuck_count=len(ids),
        campaign_ids=ids,
        threshold_minutes=30,
    )


def _circuit_breaker(rng: random.Random, ts: str, campaigns: Any) -> Record:
    return _crm(
        "Campaign paused: too many transient errors",
        "error",
        "mailer.smtp",
        "celery_worker",
        ts,
        campaign_id=rng.choice(campaigns),
        consecutive_errors=rng.randint(10, 14),
        smtp_code=451,
    )


def _unhandled(rng: random.Random, ts: str, _: Any) -> Record:
    method, template = rng.choice(REVEL_PATHS)
    return _revel(
        "unhandled_exception",
        "error",
        "revel.api",
        ts,
        method=method,
        path=_path(rng, template),
        host=rng.choice(WEB_HOSTS),
        request_id=_uuid(rng),
        exc_info=TRACEBACK,
    )


def _stripe(rng: random.Random, ts: str, _: Any) -> Record:
    roll = rng.random()
    if roll < 0.7:
        return _revel(
            "stripe_payment_failed",
            "error",
            "revel.payments",
            ts,
            payment_intent=f"pi_{rng.getrandbits(96):024x}",
            decline_code="card_declined",
            amount=rng.randint(500, 25_000),
        )
    if roll < 0.85:
        return _revel("stripe_refund_succeeded", "info", "revel.payments", ts, refund=f"re_{rng.getrandbits(64):016x}")
    return _revel(
        "stripe_session_unresolved_payment",
        "warning",
        "revel.payments",
        ts,
        session_id=f"cs_live_{rng.getrandbits(96):024x}",
    )


def _auth_failure(rng: random.Random, ts: str, _: Any) -> Record:
    event = rng.choice(
        (
            "otp_verification_failed",
            "otp_verification_failed",
            "password_reset_confirm_failed",
            "google_token_verification_failed",
        )
    )
    return _revel(
        event,
        "warning",
        "revel.accounts",
        ts,
        user_id=rng.randint(1, 250_000),
        ip=f"185.220.{rng.randint(100, 101)}.{rng.randint(1, 254)}",
    )


def _gdpr_failed(rng: random.Random, ts: str, _: Any) -> Record:
    return _revel(
        "gdpr_export_failed",
        "error",
        "revel.accounts",
        ts,
        user_id=rng.randint(1, 250_000),
        error="TimeoutError: S3 upload timed out",
    )


def _evaluation_failed(rng: random.Random, ts: str, _: Any) -> Record:
    return _revel(
        "questionnaire_evaluation_task_failed",
        "error",
        "revel.questionnaires",
        ts,
        submission_id=rng.randint(1, 2_000_000),
        task_id=_uuid(rng),
        error="openai.APITimeoutError: Request timed out.",
    )


def _llm_completed(rng: random.Random, ts: str, _: Any) -> Record:
    roll = rng.random()
    tokens: Any = rng.randint(800, 6000) if roll < 0.98 else "n/a" if roll < 0.99 else None
    record = _revel(
        "questionnaire_llm_evaluation_completed",
        "info",
        "revel.questionnaires",
        ts,
        submission_id=rng.randint(1, 2_000_000),
        model="gpt-4o-mini",
        tokens_used=tokens,
    )
    if tokens is None:
        del record["tokens_used"]
    return record


def _db_error(rng: random.Random, ts: str, host: Any) -> Record:
    event, error = rng.choice(DB_EVENTS)
    return _revel(event, "error", "revel.db", ts, host=host or rng.choice(WEB_HOSTS), error=error)


def _task_failed(rng: random.Random, ts: str, _: Any) -> Record:
    return _revel(
        rng.choice(FAILED_TASK_EVENTS),
        "error",
        "revel.celery",
        ts,
        task_id=_uuid(rng),
        retries=rng.randint(0, 3),
        worker=f"celery@worker-{rng.randint(1, 6)}",
        error="kombu.exceptions.OperationalError: [Errno 104] Connection reset by peer",
    )


def _missing_mandatory(rng: random.Random, ts: str, _: Any) -> Record:
    return _revel(
        "questionnaire_missing_mandatory_questions",
        "warning",
        "revel.questionnaires",
        ts,
        questionnaire_id=rng.randint(1, 900),
        missing_count=rng.randint(1, 4),
    )


def _deletion_blocked(rng: random.Random, ts: str, _: Any) -> Record:
    return _revel(
        "account_deletion_blocked_owns_organizations",
        "info",
        "revel.accounts",
        ts,
        user_id=rng.randint(1, 250_000),
        organization_count=rng.randint(1, 3),
    )


# (events per second, builder) at all times.
BACKGROUND: tuple[tuple[float, Builder], ...] = (
    (0.02, _unhandled),
    (0.004, _stripe),
    (0.05, _auth_failure),
    (0.07, _llm_completed),
    (0.02, _task_failed),
    (0.002, _evaluation_failed),
    (0.01, _db_error),
    (0.002, _missing_mandatory),
    (0.001, _deletion_blocked),
)

# One cycle of incidents: (offset s, duration s, events per second, builder or None for the beat outage).
INCIDENTS: tuple[tuple[int, int, float, Builder | None], ...] = (
    (300, 120, 2.0, _rate_limiter_error),  # Redis down: the mailer's rate limiter and throttle both fail
    (300, 120, 0.5, _throttle_error),
    (600, 420, 0.5, _unhandled),  # a bad deploy
    (900, 400, 0.3, _db_error),  # one web host loses its database connections (host set per incident)
    (1200, 600, 2.0, _auth_failure),  # credential stuffing
    (1500, 720, 1.2, _task_failed),  # broker trouble
    (1550, 600, 0.05, _evaluation_failed),  # LLM API timeouts
    (1800, 600, 0.05, _stripe),
    (2000, 300, 0.02, _circuit_breaker),  # campaigns set per incident
    (2100, 900, 1 / 300, _stuck),  # reconcile_campaign_queue every 5 minutes
    (2200, 420, 0.0, None),  # celery_beat down for 7 minutes
    (2300, 600, 0.4, _llm_completed),  # a runaway evaluation loop
    (2500, 200, 0.02, _gdpr_failed),
    (2550, 300, 0.01, _missing_mandatory),
)


@dataclass(slots=True)
class Incident:
    start_ms: float
    end_ms: float
    per_line: float  # probability that a line is this incident's
    builder: Builder | None
    param: Any


def _schedule(rng: random.Random, span_ms: float) -> list[Incident]:
    incidents: list[Incident] = []
    cycle = 0
    while cycle * CYCLE_S * 1000 < span_ms:
        for offset, duration, rate, builder in INCIDENTS:
            start = START_MS + (cycle * CYCLE_S + offset + rng.uniform(-60, 60)) * 1000
            param: Any = None
            if builder is _db_error:
                param = rng.choice(WEB_HOSTS)
            elif builder is _circuit_breaker:
                param = rng.sample(range(1200, 1260), 3)
            incidents.append(Incident(start, start + duration * 1000, rate / LINES_PER_SECOND, builder, param))
        cycle += 1
    incidents.sort(key=lambda inc: inc.start_ms)
    return incidents


class _Timestamps:
    """ISO 8601 with milliseconds and Z, the second's text cached."""

    def __init__(self) -> None:
        self._second = -1
        self._head = ""

    def format(self, ms: int) -> str:
        second = ms // 1000
        if second != self._second:
            self._second = second
            self._head = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._head}.{ms % 1000:03d}Z"


def generate(count: int, seed: int = SEED) -> list[bytes]:
    """`count` JSON lines, the same for the same arguments."""
    rng = random.Random(seed)
    span_ms = count / LINES_PER_SECOND * 1000 * 1.1 + CYCLE_S * 1000
    incidents = _schedule(rng, span_ms)
    timestamps = _Timestamps()
    noise_cum = list(_cumulative(w for w, _ in NOISE))
    noise_builders = [b for _, b in NOISE]
    mean_step_ms = 1000 / LINES_PER_SECOND
    upcoming = 0  # index of the first incident not yet started
    active: list[Incident] = []
    draw_cum: list[float] = []
    draw: list[tuple[Builder, Any]] = []
    beat_down = False
    next_beat = START_MS + 1000.0
    t = float(START_MS)
    out: list[bytes] = []
    changed = True
    for _ in range(count):
        t += rng.expovariate(1.0) * mean_step_ms
        while upcoming < len(incidents) and incidents[upcoming].start_ms <= t:
            active.append(incidents[upcoming])
            upcoming += 1
            changed = True
        if any(inc.end_ms <= t for inc in active):
            active = [inc for inc in active if inc.end_ms > t]
            changed = True
        if changed:
            beat_down = any(inc.builder is None for inc in active)
            draw = [(b, None) for _, b in BACKGROUND]
            weights = [rate / LINES_PER_SECOND for rate, _ in BACKGROUND]
            for inc in active:
                if inc.builder is not None:
                    draw.append((inc.builder, inc.param))
                    weights.append(inc.per_line)
            draw_cum = list(_cumulative(weights))
            changed = False
        delay = 0
        roll = rng.random()
        if roll < VERY_LATE:
            delay = rng.randint(35_000, 120_000)
        elif roll < SLIGHTLY_LATE:
            delay = rng.randint(1, 2_500)
        ts = timestamps.format(int(t) - delay)
        if t >= next_beat:
            next_beat += BEAT_EVERY_MS + rng.uniform(-300, 300)
            if not beat_down:
                out.append(orjson.dumps(_beat(rng, ts, None)))
                continue
        u = rng.random()
        pick = bisect.bisect_right(draw_cum, u)
        if pick < len(draw):
            builder, param = draw[pick]
            record = builder(rng, ts, param)
        else:
            record = noise_builders[min(bisect.bisect_right(noise_cum, rng.random()), len(NOISE) - 1)](rng, ts, None)
        out.append(orjson.dumps(record))
    return out


def _cumulative(weights: Iterable[float]) -> Iterator[float]:
    total = 0.0
    for w in weights:
        total += w
        yield total


def input_file(count: int) -> Path:
    """The cached input for `count` lines, generated on first use."""
    path = DATA_DIR / f"structlog-{count}-seed{SEED}-v{GENERATOR_VERSION}.jsonl"
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    print(f"generating {count:,} lines into {path.relative_to(ROOT)} ...", flush=True)
    watch = Stopwatch()
    lines = generate(count)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as out:
        for start in range(0, len(lines), 65_536):
            out.write(b"\n".join(lines[start : start + 65_536]) + b"\n")
    tmp.replace(path)
    print(f"  generated in {watch.elapsed():.1f} s", flush=True)
    return path


# ---- measurements ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Replay:
    seconds: float
    summary: RunSummary
    transitions: list[Transition]
    series: int
    runs: list[float] = field(default_factory=list)  # seconds of every run, in order (`seconds` is the best)


def time_parse(lines: Sequence[bytes]) -> float:
    """Seconds to orjson-parse every line, best of PARSE_RUNS (it is short, so one run is noisy)."""
    best = float("inf")
    for _ in range(PARSE_RUNS):
        gc.collect()
        watch = Stopwatch()
        for line in lines:
            orjson.loads(line)
        best = min(best, watch.elapsed())
    return best


def time_decode_match(rules: list[Rule], lines: Sequence[bytes]) -> tuple[float, float]:
    """Seconds to decode every line as the engine's intake does (the record type of these rules' fields) and
    to decode and match it, best of PARSE_RUNS each: what every replay with these rules does before any
    matched line costs anything, so parse-only seconds over the second is the most its ratio can reach."""
    compiled = Engine(rules)._rules  # the engine's own decoder and matchers, record fields included
    decode, match = compiled.decode, compiled.match
    decoded = matched = float("inf")
    for _ in range(PARSE_RUNS):
        gc.collect()
        watch = Stopwatch()
        for line in lines:
            decode(line)
        decoded = min(decoded, watch.elapsed())
        gc.collect()
        watch = Stopwatch()
        for line in lines:
            match(decode(line))
        matched = min(matched, watch.elapsed())
    return decoded, matched


async def _replay(rules: list[Rule], lines: Sequence[bytes], store: Store, reset: bool) -> Replay:
    if reset:
        await store.reset()
    engine = Engine(rules)
    source = ListSource(lines, batch_lines=BATCH_LINES)
    sink = CapturingSink()
    try:
        watch = Stopwatch()
        summary = await run(engine, source, store, sink)
        seconds = watch.elapsed()
    finally:
        await store.close()
    return Replay(seconds, summary, sink.transitions, engine.series_count())


def time_replay(
    rules: list[Rule],
    lines: Sequence[bytes],
    make_store: Callable[[], Store],
    reset: bool = False,
    runs: int = REPLAY_RUNS,
) -> Replay:
    """Best of `runs` replays, each with a fresh engine and an empty store (the first run also pays for
    warming process-wide caches, as the parse-only baseline's first run does)."""
    best: Replay | None = None
    seconds: list[float] = []
    for _ in range(runs):
        gc.collect()
        result = asyncio.run(_replay(rules, lines, make_store(), reset))
        seconds.append(result.seconds)
        if best is not None and result.transitions != best.transitions:
            raise AssertionError("two replays of the same input differ")
        if best is None or result.seconds < best.seconds:
            best = result
    assert best is not None
    best.runs = seconds
    return best


def _runs(replay: Replay) -> str:
    return "runs " + " ".join(f"{s:.2f}" for s in replay.runs) + " s"


def profile_replay(rules: list[Rule], lines: Sequence[bytes], top: int = 25) -> None:
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(_replay(rules, lines, MemoryStore(), reset=False))
    profiler.disable()
    print(f"\ncProfile of the memory replay, top {top} by tottime:")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(top)


def _redis_url_with_namespace(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "namespace=bench"


def _verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio >= target else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES, help="input size (default 1,000,000)")
    parser.add_argument(
        "--redis",
        action="store_true",
        help="require the Redis replay (a private redis-server is started; default: run it "
        "whenever redis-server is on PATH)",
    )
    parser.add_argument("--redis-url", help="use this running Redis instead (namespace `bench`, reset first)")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis replay")
    parser.add_argument("--profile", action="store_true", help="also cProfile a memory replay (top 25 by tottime)")
    parser.add_argument(
        "--runs", type=int, default=REPLAY_RUNS, help=f"replays per store, the best counted (default {REPLAY_RUNS})"
    )
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="keep the interpreter's collector thresholds (default: the engine's, as `run` and `replay` set them)",
    )
    parser.add_argument(
        "--rules",
        nargs="+",
        type=Path,
        default=[RULES_DIR],
        help="rule files or folders (default: config/rules, the shipped pack; the figures before 2026-12-03 were "
        "measured with its mailer.yaml and revel.yaml only, before slo.yaml joined it)",
    )
    args = parser.parse_args(argv)
    if args.lines <= 0:
        parser.error("--lines must be positive")
    if args.runs <= 0:
        parser.error("--runs must be positive")

    if not args.default_gc:
        tune_collector()
    path = input_file(args.lines)
    lines = path.read_bytes().splitlines()
    rules = [rule for source in args.rules for rule in load_rules(source)]
    print(f"input      {path.relative_to(ROOT)} ({path.stat().st_size / 1e6:,.1f} MB)")
    print(f"rules      {len(rules)} from {', '.join(str(source) for source in args.rules)}")
    print(f"gc         thresholds {gc.get_threshold()}")

    parse_s = time_parse(lines)
    parse_lps = len(lines) / parse_s
    decode_s, match_s = time_decode_match(rules, lines)
    memory = time_replay(rules, lines, MemoryStore, runs=args.runs)
    memory_lps = len(lines) / memory.seconds

    redis_result: Replay | None = None
    if args.redis_url:
        redis_result = time_replay(
            rules,
            lines,
            lambda: RedisStore.from_url(_redis_url_with_namespace(args.redis_url)),
            reset=True,
            runs=args.runs,
        )
    elif not args.no_redis and (args.redis or shutil.which("redis-server")):
        with redis_server() as url:
            redis_result = time_replay(
                rules, lines, lambda: RedisStore.from_url(_redis_url_with_namespace(url)), reset=True, runs=args.runs
            )

    stats = memory.summary.stats
    print(
        f"lines      {len(lines):,} (matched {stats.matched:,} = {stats.matched / len(lines):.2%}, "
        f"late {stats.late:,}, malformed {memory.summary.malformed:,})"
    )
    print(f"parse-only {parse_lps:12,.0f} lines/s  ({parse_s:.2f} s, best of {PARSE_RUNS})")
    print(
        f"ceiling    decode {parse_s / decode_s:.2f}x parse-only, decode + match {parse_s / match_s:.2f}x: "
        "the intake's own decode and the matchers over every line, the most any replay with these rules reaches"
    )
    memory_ratio = memory_lps / parse_lps
    print(
        f"replay mem {memory_lps:12,.0f} lines/s  ({memory.seconds:.2f} s)  {memory_ratio:.2f}x parse-only  "
        f"target >= {TARGET_MEMORY}x  {_verdict(memory_ratio, TARGET_MEMORY)}  ({_runs(memory)})"
    )
    if redis_result is not None:
        redis_lps = len(lines) / redis_result.seconds
        redis_ratio = redis_lps / parse_lps
        print(
            f"replay rds {redis_lps:12,.0f} lines/s  ({redis_result.seconds:.2f} s)  "
            f"{redis_ratio:.2f}x parse-only  "
            f"target >= {TARGET_REDIS}x  {_verdict(redis_ratio, TARGET_REDIS)}  ({_runs(redis_result)})"
        )
        if redis_result.transitions != memory.transitions:
            raise AssertionError(
                f"memory and redis replays differ: {len(memory.transitions)} vs "
                f"{len(redis_result.transitions)} transitions"
            )
        if redis_result.series != memory.series:
            raise AssertionError(f"series count differs: memory {memory.series}, redis {redis_result.series}")
    else:
        print("replay rds skipped (--no-redis, or no redis-server on PATH; --redis or --redis-url to require it)")
    same = " (identical on memory and redis)" if redis_result is not None else ""
    print(f"transitions {len(memory.transitions):,}{same}")
    print(f"series     {memory.series:,}")
    fired: dict[str, int] = {}
    for t in memory.transitions:
        fired[t.rule] = fired.get(t.rule, 0) + 1
    print("by rule    " + (", ".join(f"{name} {n}" for name, n in sorted(fired.items())) or "-"))

    if args.profile:
        profile_replay(rules, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
