"""The Vector http source's settings (`sources.vector` of the service config), apart from the source itself, so
that loading a config (`check --config`, `routes test`) does not import aiohttp: the source is in vector_http.py."""

from __future__ import annotations

from typing import Literal, Self

import pydantic
from pydantic import ConfigDict, Field, SecretStr

from streamalert.sources.formats import InputFormat, compile_time_pattern


class VectorHttpConfig(pydantic.BaseModel):
    """Where the source listens on the shared HTTP app, how it authenticates, and its limits."""

    model_config = ConfigDict(extra="forbid")

    path: str = "/vector"
    token: SecretStr | None = None
    auth: Literal["bearer", "none"] = "bearer"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)  # as received, and again after gunzip
    body_timeout_s: float = Field(default=10.0, gt=0)  # the whole body must arrive within this, else 408
    max_reading_requests: int = Field(default=256, gt=0)  # bodies being read at once
    max_reading_bytes: int = Field(default=64 * 1024 * 1024, gt=0)  # bytes those bodies hold together
    max_queued_requests: int = Field(default=64, gt=0)  # bodies read, waiting for their answer
    max_batch_lines: int = Field(default=4096, gt=0)  # lines of one Batch, from one or several requests
    tick_ms: int = Field(default=1000, gt=0)  # an empty Batch when nothing arrived for this long
    retry_after_s: int = Field(default=1, ge=0)
    format: InputFormat = "json"  # json | logfmt | text | auto: how lines become records (sources/formats.py)
    time_pattern: str | None = None  # a text line's leading timestamp, group `time` (default: ISO 8601)

    @pydantic.field_validator("time_pattern")
    @classmethod
    def _time_pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            compile_time_pattern(pattern)
        return pattern

    @pydantic.field_validator("path")
    @classmethod
    def _absolute_path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with '/'")
        return path

    @pydantic.model_validator(mode="after")
    def _token_for_bearer(self) -> Self:
        if self.auth == "bearer" and (self.token is None or not self.token.get_secret_value()):
            raise ValueError("token: required when auth is 'bearer' (set auth: none to accept anyone)")
        if self.max_reading_bytes < self.max_body_bytes:  # else a body of the allowed size is never read
            raise ValueError("max_reading_bytes: must be at least max_body_bytes")
        return self
