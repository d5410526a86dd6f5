"""The Kafka source's settings (`sources.kafka` of the service config), apart from the source itself, so that
loading a config (`check --config`, `routes test`) does not import aiokafka: the source is in kafka.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import pydantic
from pydantic import ConfigDict, Field, SecretStr

from streamalert.sources.formats import InputFormat, compile_time_pattern

OutOfRangePolicy = Literal["earliest", "latest", "fail"]  # see kafka_offsets.py


class KafkaConfig(pydantic.BaseModel):
    """Consumer settings; names follow the Kafka client settings they map to."""

    model_config = ConfigDict(extra="forbid")

    brokers: list[str] = Field(min_length=1)  # bootstrap servers, host:port
    # Several processes in this consumer group share one state namespace: each runs intake for its partitions,
    # the namespace's lease holder evaluates for all (needs Redis state). Off: one writer, standbys wait.
    replicas: bool = False
    topics: list[str] = Field(default_factory=list)
    topic_pattern: str | None = None  # a regular expression, instead of `topics`
    group_id: str = "streamalert"
    client_id: str = "streamalert"
    auto_offset_reset: Literal["earliest", "latest"] = "latest"  # where a partition with no stored offset starts
    # A partition whose offset lies outside its log (above its end: topic re-created, broker data lost; below
    # its start: retention) continues at the log start (earliest: an alerting sidecar loses no record written
    # since), at its end (latest), or stops, keeping readiness failed and logging (fail).
    offset_out_of_range: OutOfRangePolicy = "earliest"
    max_batch_lines: int = Field(default=10_000, gt=0)  # lines per batch at most (a batch holds one partition)
    tick_ms: int = Field(default=1000, gt=0)  # an empty Batch when nothing arrived for this long
    format: InputFormat = "json"  # json | logfmt | text | auto: how lines become records (sources/formats.py)
    time_pattern: str | None = None  # a text line's leading timestamp, group `time` (default: ISO 8601)
    # A partition read to its end still holds the clock at its newest time until it has had no record for this
    # long (Flink's idleness): records still being written to it may be older than other partitions' backlog.
    idle_ms: int = Field(default=10_000, ge=0)
    # How long the broker may hold a fetch that finds no new record. Kafka answers as soon as fetch_min_bytes
    # arrive, so this costs latency only on brokers that poll (Tansu sleeps a fraction of it between looks);
    # idle, each consumer sends one fetch per broker this often (100 ms: ~10 small requests/s, 20 ms: ~50,
    # aiokafka's 500: 2). On Tansu 20 keeps p99 produce -> transition under 50 ms at lateness 0 and 100 does
    # not (bench/README.md, "Live benchmark").
    fetch_max_wait_ms: int = Field(default=20, ge=0)
    fetch_min_bytes: int = Field(default=1, gt=0)
    # Bytes one fetch response may carry per partition (Kafka's max.partition.fetch.bytes, 1 MiB by default),
    # and in all (fetch.max.bytes; Kafka's default is 50 MiB). The source parses a whole response in one go
    # (kafka_records.py: about 0.5-1.5 us a record here), so the total bounds that loop stall: 8 MiB is about
    # 29,000 lines of 290 bytes. A single record batch larger than either is still returned, as in Kafka.
    max_partition_fetch_bytes: int = Field(default=1_048_576, gt=0)
    fetch_max_bytes: int = Field(default=8_388_608, gt=0)
    commit_interval_ms: int = Field(default=1_000, ge=0)  # Kafka's copy of the offsets (the store has the truth)
    session_timeout_ms: int = Field(default=10_000, gt=0)
    heartbeat_interval_ms: int = Field(default=3_000, gt=0)
    max_poll_interval_ms: int = Field(default=300_000, gt=0)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @pydantic.field_validator("time_pattern")
    @classmethod
    def _time_pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            compile_time_pattern(pattern)
        return pattern

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Self:
        if bool(self.topics) == (self.topic_pattern is not None):
            raise ValueError("set exactly one of topics (a list) and topic_pattern (a regular expression)")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and (self.sasl_mechanism is None or not self.sasl_username or self.sasl_password is None):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password"
            )
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise ValueError("sasl_* settings need security_protocol SASL_PLAINTEXT or SASL_SSL")
        if self.ssl_certfile is None and self.ssl_keyfile is not None:
            raise ValueError("ssl_keyfile needs ssl_certfile")
        return self

    def owner_silence_ms(self) -> int:
        """Replicas mode: how long a partition's owner may go without reporting before the evaluation holds
        its clock for that partition (the owner is gone, or the partition is between owners)."""
        return max(5_000, 5 * self.tick_ms)

    def consumer_options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaConsumer (auto-commit off: offsets follow the state store; aiokafka's
        reset off: the source handles partitions with no offset and offsets outside the log itself)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.brokers,
            "group_id": self.group_id,
            "client_id": self.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "none",
            "max_poll_records": self.max_batch_lines,
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "fetch_min_bytes": self.fetch_min_bytes,
            "max_partition_fetch_bytes": self.max_partition_fetch_bytes,
            "fetch_max_bytes": self.fetch_max_bytes,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "max_poll_interval_ms": self.max_poll_interval_ms,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_"):
            assert self.sasl_password is not None  # checked by the validator
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol.endswith("SSL"):
            import ssl  # noqa: PLC0415 (on use: loading a config does not need it)

            context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
            if self.ssl_certfile is not None:
                context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None)
            options["ssl_context"] = context
        return options
