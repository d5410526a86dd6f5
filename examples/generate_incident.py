#!/usr/bin/env python3
"""Write examples/incident.jsonl: two hours of structlog JSON from the crm mailer and Revel, with an incident.

Deterministic: every random choice comes from one random.Random with a fixed seed, and every line that
decides an alert transition is placed at a fixed time listed below, so the timeline in examples/README.md
can be computed by hand. Standard library only.

    python examples/generate_incident.py                # writes examples/incident.jsonl
    python examples/generate_incident.py -o /tmp/x.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SEED = 20260126
DAY = datetime(2026, 1, 26, tzinfo=UTC)
START = "09:00:00"
END = "11:00:00"  # inclusive: the last lines are at 11:00:00.000

# --- the incident, in the order it unfolds (times are UTC on 2026-01-26) -----------------------------

MISSING_MANDATORY = [f"09:{m:02d}:00" for m in range(2, 43, 4)]  # 11 lines, 09:02 .. 09:42, every 4 min
BLOCKED_DELETIONS = ["09:10:11", "09:34:50", "09:58:02", "10:21:45", "10:44:09", "10:52:33"]
LONE_UNHANDLED = ["09:12:17", "10:41:33"]  # background: single errors that must not alert
LONE_AUTH_FAILURES = ["09:08:41", "09:51:13", "10:05:09"]
LONE_STRIPE_FAILURE = "09:47:12"
LONE_TASK_FAILURE = "09:33:27"

REDIS_DOWN, REDIS_UP = "09:15:00", "09:21:00"
RATE_LIMITER_ERRORS = ("09:15:12", 30, 12)  # first, step s, count: 09:15:12 .. 09:20:42
RATE_LIMITER_LATE_S = 4.5  # the last rate-limiter line is written 4.5 s late (out of order)
THROTTLE_ERRORS = ["09:16:05", "09:17:40", "09:19:58"]

LLM_RUNAWAY = ("09:20:00", 30, 20, 50_000)  # first, step s, count, tokens_used: 09:20:00 .. 09:29:30
LLM_BACKGROUND_TOKENS = 2_500  # one evaluation at hh:m5:30 every 10 minutes

CAMPAIGN_42_TRANSIENT = ("09:26:50", 30, 9)  # warnings, consecutive_errors 1..9
CAMPAIGN_42_BREAKER = "09:31:20"  # consecutive_errors 10
STUCK_CAMPAIGN, STUCK_STARTED_AT = 61, "09:04:51"
STUCK_WARNINGS = ["09:35:04", "09:40:04"]  # reconcile_campaign_queue runs at :x0 / :x5 (+4 s)

BEAT_LAST, BEAT_BACK = "09:40:00", "09:52:00"  # celery_beat silent in between
STUCK_RESET = "09:53:30"  # on-call resets campaign 61 by hand

UNHANDLED_BURST = ("10:00:00", 5, 119)  # 10:00:00 .. 10:09:50 every 5 s (bad deploy, rolled back)
CAMPAIGN_77_TRANSIENT = ("10:01:10", 30, 9)
CAMPAIGN_77_BREAKER = "10:05:40"  # consecutive_errors arrives as the string "10"
GDPR_FAILURE = "10:05:18"
STRIPE_FAILURES = ("10:15:00", 60, 15)  # 10:15:00 .. 10:29:00
QUESTIONNAIRE_FAILURES = ("10:22:00", 60, 6)  # 10:22:00 .. 10:27:00
AUTH_BURST = ("10:30:00", 0.5, 1201)  # 10:30:00.000 .. 10:40:00.000, two per second
TASK_FAILURE_BURST = ("10:41:00", 1, 481)  # 10:41:00 .. 10:49:00, one per second
DB1_ERRORS = ("10:50:00", 10, 30)  # host db-1: 10:50:00 .. 10:54:50
DB2_ERRORS = ("10:51:00", 30, 8)  # host db-2: 10:51:00 .. 10:54:30, never more than 8 in 5 minutes

# SLO lines (config/rules/slo.yaml), from their own random.Random(SLO_SEED) so every other line stays as it
# was. The mailer logs "Campaign sending started" (with ready_to_send_s, READY -> first SEND) at hh:(even
# minute):20 and "Campaign finished" (status completed / failed) at hh:(odd minute):40, none while beat is
# down; the campaigns that were READY while it was down start late, right after it is back.
SLO_SEED = 20260127
FAILED_CAMPAIGN_FINISHES = ["09:29:40", "10:05:40"]  # smtp.bz trouble (campaigns 42 and 77)
LATE_STARTS = [("09:52:20", 730), ("09:52:50", 520), ("09:53:20", 310)]  # READY 09:40:10, 09:44:10, 09:48:10
SLOW_REQUESTS = ("10:20:05", 10, 30, 2_500.0)  # Revel checkout slow under the Stripe trouble: 10:20:05..10:24:55

# Malformed lines, written right after the first line at or after these times.
EMPTY_LINE_AT = "09:30:00"
TRUNCATED_LINE_AT = "09:58:13"
ARRAY_LINE_AT = "10:44:00"
# Background Revel request lines written late: (the first one at or after this time, seconds late).
LATE_BACKGROUND = [("10:10:00", 6.0), ("10:36:00", 3.0)]


def at(clock: str, plus_s: float = 0.0) -> datetime:
    """A time of day on 2026-01-26 (UTC), optionally shifted by plus_s seconds."""
    h, m, s = (int(x) for x in clock.split(":"))
    return DAY + timedelta(hours=h, minutes=m, seconds=s + plus_s)


def series(first: str, step_s: float, count: int) -> list[datetime]:
    return [at(first, step_s * k) for k in range(count)]


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@dataclass(order=True)
class Line:
    written: datetime  # where the line goes in the file (its own time unless written late)
    seq: int
    record: dict[str, Any] | None = field(compare=False, default=None)
    raw: str | None = field(compare=False, default=None)


class Log:
    """Collects records; the file is sorted by write time, ties kept in insertion order."""

    def __init__(self) -> None:
        self.lines: list[Line] = []

    def add(self, t: datetime, record: dict[str, Any], late_s: float = 0.0) -> dict[str, Any]:
        full = {"timestamp": stamp(t), **record}
        self.lines.append(Line(t + timedelta(seconds=late_s), len(self.lines), full))
        return full

    def add_raw(self, t: datetime, raw: str) -> None:
        self.lines.append(Line(t, len(self.lines), raw=raw))

    def render(self) -> Iterator[str]:
        for line in sorted(self.lines):
            yield line.raw if line.raw is not None else json.dumps(line.record, ensure_ascii=False)


# --- record shapes --------------------------------------------------------------------------------

CRM_WORKER = {"app": "crm", "container": "celery_worker", "host": "crm-node-2"}
CRM_WEB = {"app": "crm", "container": "crm_web", "host": "crm-node-1"}
CRM_BEAT = {"app": "crm", "container": "celery_beat", "host": "crm-node-2"}
REVEL_WORKER_HOSTS = ["revel-worker-1", "revel-worker-2"]
REVEL_WEB_HOSTS = ["revel-web-1", "revel-web-2"]


def revel_web(rng: random.Random) -> dict[str, Any]:
    return {"service": "revel", "container": "revel-web", "host": rng.choice(REVEL_WEB_HOSTS)}


def revel_worker(rng: random.Random) -> dict[str, Any]:
    return {"service": "revel", "container": "revel-worker", "host": rng.choice(REVEL_WORKER_HOSTS)}


def hex_id(rng: random.Random, n: int = 16) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


REVEL_ROUTES = [
    ("GET", "/api/events/", 200),
    ("GET", "/api/events/{id}", 200),
    ("GET", "/api/organizations/{id}", 200),
    ("POST", "/api/events/{id}/rsvp", 201),
    ("GET", "/api/me", 200),
    ("GET", "/api/events/{id}/tickets", 200),
    ("POST", "/api/questionnaires/{id}/submit", 201),
    ("GET", "/api/healthcheck", 200),
    ("GET", "/api/events/{id}", 404),
]
CRM_ROUTES = [
    ("GET", "/crm/campaigns/", 200),
    ("GET", "/crm/campaigns/{id}/", 200),
    ("GET", "/crm/contacts/", 200),
    ("POST", "/crm/contacts/import/", 302),
    ("GET", "/crm/dashboard/", 200),
    ("GET", "/static/crm/app.js", 304),
]
CELERY_TASK_NAMES = [
    "send_event_reminder",
    "send_notification_email",
    "generate_ticket_pdf",
    "sync_calendar_invites",
]


def request_line(rng: random.Random, routes: list[tuple[str, str, int]]) -> dict[str, Any]:
    method, path, status = rng.choice(routes)
    return {
        "method": method,
        "path": path.replace("{id}", str(rng.randint(1, 4000))),
        "status_code": status,
        "duration_ms": round(rng.lognormvariate(3.6, 0.6), 1),
        "request_id": hex_id(rng),
    }


# --- background -----------------------------------------------------------------------------------


def poisson_times(rng: random.Random, mean_gap_s: float, start: datetime, end: datetime) -> Iterator[datetime]:
    t = start + timedelta(seconds=rng.expovariate(1 / mean_gap_s))
    while t <= end:
        yield t.replace(microsecond=t.microsecond // 1000 * 1000)
        t += timedelta(seconds=rng.expovariate(1 / mean_gap_s))


def beat_alive(t: datetime) -> bool:
    return not (at(BEAT_LAST) < t < at(BEAT_BACK))


def background(log: Log, rng: random.Random) -> None:
    start, end = at(START), at(END)
    late = {at(clock): seconds for clock, seconds in LATE_BACKGROUND}
    pending_late = sorted(late)

    def late_for(t: datetime) -> float:
        if pending_late and t >= pending_late[0]:
            return late[pending_late.pop(0)]
        return 0.0

    for t in poisson_times(rng, 3.0, start, end):
        record = {"level": "info", "event": "request_finished", "logger": "revel.api.middleware"}
        log.add(t, {**record, **revel_web(rng), **request_line(rng, REVEL_ROUTES)}, late_s=late_for(t))
    for t in poisson_times(rng, 9.0, start, end):
        record = {"level": "info", "event": "request_finished", "logger": "crm.http", **CRM_WEB}
        log.add(t, {**record, **request_line(rng, CRM_ROUTES)})
    for t in poisson_times(rng, 75.0, start, end):
        task = rng.choice(CELERY_TASK_NAMES)
        log.add(
            t,
            {
                "level": "info",
                "event": "task_succeeded",
                "logger": "revel.celery",
                **revel_worker(rng),
                "task": f"notifications.tasks.{task}",
                "task_id": hex_id(rng, 32),
                "runtime_ms": rng.randint(40, 900),
            },
        )

    # Mailer sends (about 70/hour, under the 100/hour limit); none while beat is down, since nothing
    # schedules send_pending_emails then; campaign 42 stops when it is paused, 77 likewise.
    for t in poisson_times(rng, 50.0, start, end):
        if at(BEAT_LAST) < t < at(BEAT_BACK, 30):
            continue
        campaigns = [57, 63, 70]
        if t < at(CAMPAIGN_42_TRANSIENT[0]):
            campaigns.append(42)
        if t < at(CAMPAIGN_77_TRANSIENT[0]):
            campaigns.append(77)
        log.add(
            t,
            {
                "level": "info",
                "message": "Email sent successfully",
                "logger": "mailer.tasks",
                **CRM_WORKER,
                "campaign_id": rng.choice(campaigns),
                "recipient_id": rng.randint(10_000, 99_999),
                "provider": "smtp_global",
                "smtp_message_id": f"<{hex_id(rng, 24)}@smtp.bz>",
            },
        )

    # Celery beat: one "beat:" line a minute while alive; reconcile_campaign_queue reports every 5 minutes.
    minute = start
    while minute <= end:
        if beat_alive(minute):
            task = (
                "sync_smtp_bz_quota"
                if minute.minute == 0
                else "reconcile_campaign_queue"
                if minute.minute % 5 == 0
                else "send_pending_emails"
            )
            if minute == at(BEAT_BACK):
                log.add(
                    minute,
                    {
                        "level": "info",
                        "message": "beat: Starting...",
                        "logger": "celery.beat",
                        **CRM_BEAT,
                        "scheduler": "django_celery_beat.schedulers:DatabaseScheduler",
                    },
                )
            log.add(
                minute,
                {
                    "level": "info",
                    "message": f"beat: Sending due task {task} (mailer.tasks.{task})",
                    "logger": "celery.beat",
                    **CRM_BEAT,
                },
            )
            if minute.minute % 5 == 0:
                check = minute + timedelta(seconds=4)
                if stamp(check)[11:19] not in STUCK_WARNINGS:
                    log.add(
                        check,
                        {
                            "level": "info",
                            "message": "Campaign queue reconciled",
                            "logger": "mailer.tasks",
                            **CRM_WORKER,
                            "task": "mailer.tasks.reconcile_campaign_queue",
                            "stuck_count": 0,
                            "pending_count": rng.randint(3, 9),
                        },
                    )
        minute += timedelta(minutes=1)

    # Normal LLM questionnaire evaluations, every 10 minutes at hh:m5:30.
    t = at("09:05:30")
    while t <= end:
        log.add(t, llm_completed(rng, LLM_BACKGROUND_TOKENS))
        t += timedelta(minutes=10)

    for clock in LONE_UNHANDLED:
        log.add(at(clock), unhandled(rng, "ValidationError", "'NoneType' object has no attribute 'timezone'"))
    for clock in LONE_AUTH_FAILURES:
        log.add(at(clock), auth_failure(rng, "otp_verification_failed"))
    log.add(at(LONE_STRIPE_FAILURE), stripe_failure(rng, "stripe_payment_failed", "card_declined"))
    log.add(
        at(LONE_TASK_FAILURE),
        task_failure(rng, "sync_calendar_invites", "HTTPError: 503 Service Unavailable"),
    )


# --- incident records -----------------------------------------------------------------------------


def llm_completed(rng: random.Random, tokens: int) -> dict[str, Any]:
    return {
        "level": "info",
        "event": "questionnaire_llm_evaluation_completed",
        "logger": "questionnaires.llm",
        **revel_worker(rng),
        "questionnaire_id": rng.randint(100, 140),
        "submission_id": rng.randint(50_000, 59_999),
        "model": "gpt-4o-mini",
        "tokens_used": tokens,
    }


def unhandled(rng: random.Random, exc_type: str, exc_message: str) -> dict[str, Any]:
    return {
        "level": "error",
        "event": "unhandled_exception",
        "logger": "revel.api.middleware",
        **revel_web(rng),
        **request_line(rng, [("POST", "/api/events/{id}/tickets/checkout", 500)]),
        "exception_type": exc_type,
        "exception_message": exc_message,
        "user_id": rng.randint(1, 20_000),
    }


def auth_failure(rng: random.Random, event: str) -> dict[str, Any]:
    return {
        "level": "warning",
        "event": event,
        "logger": "accounts.auth",
        **revel_web(rng),
        "email_hash": hex_id(rng, 12),
        "client_ip": f"203.0.113.{rng.randint(2, 250)}",
        "request_id": hex_id(rng),
    }


def stripe_failure(rng: random.Random, event: str, code: str) -> dict[str, Any]:
    return {
        "level": "error",
        "event": event,
        "logger": "payments.stripe",
        **revel_web(rng),
        "payment_id": f"pi_{hex_id(rng, 24)}",
        "amount": rng.choice([1500, 2500, 4000, 9900]),
        "currency": "eur",
        "stripe_error_code": code,
        "event_id": rng.randint(300, 420),
    }


def task_failure(rng: random.Random, task: str, error: str) -> dict[str, Any]:
    return {
        "level": "error",
        "event": f"{task}_task_failed",
        "logger": "revel.celery",
        **revel_worker(rng),
        "task": f"notifications.tasks.{task}",
        "task_id": hex_id(rng, 32),
        "error": error,
        "retries": rng.randint(0, 3),
    }


def mailer_transient(rng: random.Random, campaign: int, n: int) -> dict[str, Any]:
    return {
        "level": "warning",
        "event": "Transient SMTP error, retry scheduled",
        "logger": "mailer.tasks",
        **CRM_WORKER,
        "campaign_id": campaign,
        "consecutive_errors": n,
        "defer_reason": "transient_error",
        "error": "SMTPServerDisconnected('Connection unexpectedly closed')",
        "recipient_id": rng.randint(10_000, 99_999),
    }


def mailer_breaker(campaign: int, consecutive: int | str) -> dict[str, Any]:
    return {
        "level": "error",
        "event": "Campaign paused: too many transient errors (circuit breaker)",
        "logger": "mailer.tasks",
        **CRM_WORKER,
        "campaign_id": campaign,
        "consecutive_errors": consecutive,
        "threshold": 10,
        "defer_reason": "transient_error",
    }


def incident(log: Log, rng: random.Random) -> None:
    for clock in MISSING_MANDATORY:
        log.add(
            at(clock),
            {
                "level": "warning",
                "event": "questionnaire_missing_mandatory_questions",
                "logger": "questionnaires.service",
                **revel_web(rng),
                "questionnaire_id": 131,
                "missing_question_ids": [rng.choice([2207, 2208, 2215])],
                "user_id": rng.randint(1, 20_000),
            },
        )
    for clock in BLOCKED_DELETIONS:
        log.add(
            at(clock),
            {
                "level": "info",
                "event": "account_deletion_blocked_owns_organizations",
                "logger": "accounts.service",
                **revel_web(rng),
                "user_id": rng.randint(1, 20_000),
                "organization_ids": [rng.randint(1, 300)],
            },
        )

    # Redis outage: rate limiter fails open, throttle fails closed.
    log.add(
        at(REDIS_DOWN),
        {
            "level": "warning",
            "message": "Redis connection lost, retrying",
            "logger": "crm.redis",
            **CRM_WEB,
            "redis_host": "redis:6379",
        },
    )
    first, step, count = RATE_LIMITER_ERRORS
    for k, t in enumerate(series(first, step, count)):
        log.add(
            t,
            {
                "level": "error",
                "event": "Error reserving rate limit token (Redis unavailable), allowing send (fail-open)",
                "logger": "mailer.rate_limiter",
                **CRM_WORKER,
                "error_type": "rate_limiter_backend_error",
                "policy": "fail_open",
                "redis_key": f"crm:mailer:rate:hour:2026-01-26:{t.hour:02d}",
                "campaign_id": rng.choice([57, 63, 70]),
                "error": "ConnectionError('Error 111 connecting to redis:6379. Connection refused.')",
            },
            late_s=RATE_LIMITER_LATE_S if k == count - 1 else 0.0,
        )
    for clock, action in zip(THROTTLE_ERRORS, ["campaign_start", "test_email", "campaign_start"], strict=True):
        log.add(
            at(clock),
            {
                "level": "ERROR",
                "message": "Throttle backend (Redis) unavailable for action",
                "logger": "mailer.throttle",
                **CRM_WEB,
                "error_type": "throttle_backend_error",
                "policy": "fail_closed",
                "action": action,
                "user_id": rng.randint(2, 60),
            },
        )
    log.add(
        at(REDIS_UP),
        {
            "level": "info",
            "message": "Redis connection restored",
            "logger": "crm.redis",
            **CRM_WEB,
            "redis_host": "redis:6379",
        },
    )

    first, step, count, tokens = LLM_RUNAWAY
    for t in series(first, step, count):
        log.add(t, llm_completed(rng, tokens))

    # smtp.bz trouble: campaign 42 trips the circuit breaker.
    for n, t in enumerate(series(*CAMPAIGN_42_TRANSIENT), start=1):
        log.add(t, mailer_transient(rng, 42, n))
    log.add(at(CAMPAIGN_42_BREAKER), mailer_breaker(42, 10))

    for clock in STUCK_WARNINGS:
        log.add(
            at(clock),
            {
                "level": "warning",
                "message": "Stuck PROCESSING campaigns detected",
                "logger": "mailer.tasks",
                **CRM_WORKER,
                "task": "mailer.tasks.reconcile_campaign_queue",
                "stuck_count": 1,
                "campaign_ids": [STUCK_CAMPAIGN],
                "oldest_started_at": stamp(at(STUCK_STARTED_AT)),
                "threshold_minutes": 30,
            },
        )
    log.add(
        at(STUCK_RESET),
        {
            "level": "info",
            "message": "Campaign queue entry reset to pending",
            "logger": "mailer.admin",
            **CRM_WEB,
            "campaign_id": STUCK_CAMPAIGN,
            "reset_by": "oncall",
        },
    )

    # A bad Revel deploy at 10:00 breaks ticket checkout until the rollback.
    for t in series(*UNHANDLED_BURST):
        log.add(t, unhandled(rng, "KeyError", "'tier_id'"))

    for n, t in enumerate(series(*CAMPAIGN_77_TRANSIENT), start=1):
        log.add(t, mailer_transient(rng, 77, n))
    log.add(at(CAMPAIGN_77_BREAKER), mailer_breaker(77, "10"))

    log.add(
        at(GDPR_FAILURE),
        {
            "level": "error",
            "event": "gdpr_export_failed",
            "logger": "accounts.gdpr",
            **revel_worker(rng),
            "user_id": rng.randint(1, 20_000),
            "export_id": hex_id(rng, 8),
            "error": "S3 upload timed out after 3 attempts",
        },
    )

    kinds = [
        ("stripe_payment_failed", "api_error"),
        ("stripe_payment_failed", "rate_limit"),
        ("stripe_refund_failed", "api_error"),
        ("stripe_session_unresolved_payment", "timeout"),
    ]
    for t in series(*STRIPE_FAILURES):
        log.add(t, stripe_failure(rng, *rng.choice(kinds)))

    for t in series(*QUESTIONNAIRE_FAILURES):
        log.add(
            t,
            {
                "level": "error",
                "event": "questionnaire_evaluation_task_failed",
                "logger": "questionnaires.tasks",
                **revel_worker(rng),
                "questionnaire_id": 131,
                "submission_id": rng.randint(50_000, 59_999),
                "error": "APITimeoutError('Request timed out.')",
            },
        )

    auth_events = ["otp_verification_failed"] * 8 + [
        "password_reset_confirm_failed",
        "google_token_verification_failed",
    ]
    for t in series(*AUTH_BURST):
        log.add(t, auth_failure(rng, rng.choice(auth_events)))

    for t in series(*TASK_FAILURE_BURST):
        task = rng.choice(["send_event_reminder", "send_notification_email"])
        log.add(t, task_failure(rng, task, "SMTPServerDisconnected('Connection unexpectedly closed')"))

    db_errors = [
        ("database_error", "psycopg.OperationalError: server closed the connection unexpectedly"),
        (
            "postgres_connection_failed",
            "psycopg.OperationalError: connection failed: FATAL: remaining connection slots are reserved",
        ),
    ]
    for host, spec in (("db-1", DB1_ERRORS), ("db-2", DB2_ERRORS)):
        for t in series(*spec):
            event, error = rng.choice(db_errors)
            # The DB layer binds the database host as `host`, so DatabaseErrors groups per database server.
            log.add(
                t,
                {
                    "level": "error",
                    "event": event,
                    "logger": "django.db.backends",
                    "service": "revel",
                    "container": rng.choice(["revel-web", "revel-worker"]),
                    "host": host,
                    "db_alias": "default",
                    "error": error,
                },
            )


def slo_lines(log: Log) -> None:
    """The lines the SLO rules of config/rules/slo.yaml read (see SLO_SEED)."""
    rng = random.Random(SLO_SEED)
    campaign = 100
    t = at("09:00:20")
    while t <= at(END):
        if t == at(LATE_STARTS[0][0]):  # beat is back: the campaigns that became READY meanwhile start
            for clock, wait_s in LATE_STARTS:
                campaign += 1
                log.add(at(clock), campaign_started(campaign, wait_s))
        elif beat_alive(t):
            campaign += 1
            log.add(t, campaign_started(campaign, rng.randint(20, 120)))
        t += timedelta(minutes=2)
    t = at("09:01:40")
    while t <= at(END):
        if beat_alive(t):
            failed = stamp(t)[11:19] in FAILED_CAMPAIGN_FINISHES
            log.add(
                t,
                {
                    "level": "info",
                    "message": "Campaign finished",
                    "logger": "mailer.tasks",
                    **CRM_WORKER,
                    "campaign_id": rng.randint(100, 160),
                    "status": "failed" if failed else "completed",
                    "sent_count": rng.randint(50, 400),
                    "failed_count": rng.randint(30, 80) if failed else 0,
                },
            )
        t += timedelta(minutes=2)
    first, step, count, duration = SLOW_REQUESTS
    for t in series(first, step, count):
        record = {"level": "info", "event": "request_finished", "logger": "revel.api.middleware", **revel_web(rng)}
        request = request_line(rng, [("GET", "/api/events/{id}/tickets", 200)])
        log.add(t, {**record, **request, "duration_ms": duration})


def campaign_started(campaign: int, wait_s: int) -> dict[str, Any]:
    return {
        "level": "info",
        "message": "Campaign sending started",
        "logger": "mailer.tasks",
        **CRM_WORKER,
        "campaign_id": campaign,
        "ready_to_send_s": wait_s,
    }


def malformed(log: Log) -> None:
    # Each goes right after the last line written at its time (sorting puts later seq after equal times).
    log.add_raw(at(EMPTY_LINE_AT), "")
    log.add_raw(
        at(TRUNCATED_LINE_AT),
        '{"timestamp": "2026-01-26T09:58:13.000Z", "level": "info", "event": "request_fini',
    )
    log.add_raw(
        at(ARRAY_LINE_AT),
        '[{"timestamp": "2026-01-26T10:44:00.000Z", "level": "info", "event": "request_finished"}]',
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("incident.jsonl"))
    args = parser.parse_args()
    rng = random.Random(SEED)
    log = Log()
    background(log, rng)
    incident(log, rng)
    slo_lines(log)
    malformed(log)
    lines = list(log.render())
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} lines to {args.output}")


if __name__ == "__main__":
    main()
