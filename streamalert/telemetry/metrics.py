"""Every Prometheus metric streamalert exports, defined once, on a registry of its own.

A `Metrics` owns a private `CollectorRegistry` (never prometheus_client's global one), so tests and embedded
uses can make as many as they like. Names are prefixed `streamalert_`; counters end in `_total`, durations
are in seconds (`_seconds`), following the Prometheus naming conventions. `render()` gives the text
exposition served on `/metrics`.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "streamalert_"

# now - event time of the newest event of a batch: from 10 ms (caught up) to an hour (a backlog).
LAG_BUCKETS: tuple[float, ...] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
# Lines per batch: 1, 4, 16, ... 65536 (powers of 4).
BATCH_BUCKETS: tuple[float, ...] = tuple(float(4**k) for k in range(9))
# One checkpoint commit (memory: microseconds; Redis: a round trip, or a stall).
STORE_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

SEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# How late the event loop ran a periodic tick: a healthy loop is within milliseconds; 1 s is a stall.
LOOP_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metrics of one streamalert process, on their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def per_source(name: str, help_text: str) -> Counter:
            return Counter(PREFIX + name, help_text + ", per source.", ["source"], registry=r)

        self.events_in = per_source("events_in_total", "Log lines received")
        self.events_matched = per_source("events_matched_total", "Log lines that matched at least one rule")
        self.events_malformed = per_source(
            "events_malformed_total", "Log lines skipped because they are not a JSON object"
        )
        self.events_late = per_source(
            "events_late_total", "Log lines dropped because their event time is behind the allowed lateness"
        )
        self.events_untimed = per_source("events_untimed_total", "Log lines without a usable timestamp")
        self.events_arrival_timed = per_source(
            "events_arrival_timed_total",
            "Logfmt or text lines without a timestamp of their own, timed by their arrival (sources/formats.py)",
        )
        self.events_clamped = per_source(
            "events_clamped_total",
            "Log lines stamped too far ahead of the wall clock, placed at the wall clock",
        )
        self.processing_lag = Histogram(
            PREFIX + "processing_lag_seconds",
            "Wall time minus the event time of the newest event of each batch.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            PREFIX + "batch_lines",
            "Log lines per batch taken from a source.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.store_latency = Histogram(
            PREFIX + "store_commit_seconds",
            "Time to commit one checkpoint to the state store.",
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.transitions = Counter(
            PREFIX + "transitions_total",
            "Alert transitions emitted, per rule and new state (firing or resolved).",
            ["rule", "state"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            PREFIX + "consumer_lag",
            "Kafka records not yet consumed, per topic and partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.kafka_offset_out_of_range = Counter(
            PREFIX + "kafka_offset_out_of_range_total",
            "Kafka partitions found to be read from an offset outside their log (topic re-created, retention), "
            "per topic and partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.http_requests = Counter(
            PREFIX + "http_requests_total",
            "Ingest HTTP requests answered, per source and status code.",
            ["source", "code"],
            registry=r,
        )
        self.ingest_requests = Gauge(
            PREFIX + "ingest_requests",
            "Vector ingest requests held: state=reading (body arriving) or queued (body read, waiting for its answer).",
            ["state"],
            registry=r,
        )
        self.ready = Gauge(PREFIX + "ready", "1 when the process is ready to take input, else 0.", registry=r)
        self.series = Gauge(PREFIX + "series", "Live series held by the engine.", registry=r)
        self.store_retries = Counter(
            PREFIX + "store_retries_total", "Checkpoint commits retried after a store failure.", registry=r
        )
        self.notifications = Counter(
            PREFIX + "notifications_total",
            "Notification delivery attempts, per sink kind and outcome (sent, failed, dead).",
            ["sink", "status"],
            registry=r,
        )
        self.notifications_429 = Counter(
            PREFIX + "notifications_429_total",
            "Delivery attempts answered 429 (rate limited), per sink kind.",
            ["sink"],
            registry=r,
        )
        self.alerts_deduplicated = Counter(
            PREFIX + "alerts_deduplicated_total",
            "Firing alerts a group flush did not send again (already notified, repeat_interval not elapsed).",
            registry=r,
        )
        self.alerts_silenced = Counter(
            PREFIX + "alerts_silenced_total",
            "Firing alerts left out of a notification by a silence or an inhibition rule.",
            registry=r,
        )
        self.alerts_time_muted = Counter(
            PREFIX + "alerts_time_muted_total",
            "Firing alerts left out of a flush because their route was in a mute or outside its active time interval.",
            registry=r,
        )
        self.template_errors = Counter(
            PREFIX + "template_errors_total",
            "Message templates that failed to render (the sink's default format was sent), per sink kind and field.",
            ["sink", "field"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            PREFIX + "outbox_depth", "Notifications waiting in the outbox for delivery.", registry=r
        )
        self.send_latency = Histogram(
            PREFIX + "notification_send_seconds",
            "Time of one delivery attempt, per sink kind.",
            ["sink"],
            buckets=SEND_BUCKETS,
            registry=r,
        )

        self.loop_lag = Histogram(
            PREFIX + "event_loop_lag_seconds",
            "How much later than asked the event loop ran a periodic tick (time the loop was kept busy).",
            buckets=LOOP_BUCKETS,
            registry=r,
        )
        self.loop_lag_max = Gauge(
            PREFIX + "event_loop_lag_max_seconds", "The longest event loop lag seen since start.", registry=r
        )
        self.series_dropped = Counter(
            PREFIX + "series_dropped_total",
            "Matched events that would have created a series beyond the series caps, per rule.",
            ["rule"],
            registry=r,
        )
        self.lease_held = Gauge(
            PREFIX + "lease_held", "1 while this process holds its namespace's writer lease, else 0.", registry=r
        )
        self.lease_lost = Counter(
            PREFIX + "lease_lost_total",
            "Times another process took this process's namespace over (it went back to standby).",
            registry=r,
        )

        self.config_reload_ok = Gauge(
            PREFIX + "config_last_reload_successful",
            "1 when the last configuration reload succeeded (or none was asked for), 0 when it was refused.",
            registry=r,
        )
        self.config_digest_mismatch = Gauge(
            PREFIX + "config_digest_mismatch",
            "Replicas mode: 1 while this replica runs another configuration than the one published for its "
            "namespace (its files differ or do not validate), else 0.",
            registry=r,
        )
        self.config_reload_time = Gauge(
            PREFIX + "config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (start or reload), as a Unix time.",
            registry=r,
        )

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
