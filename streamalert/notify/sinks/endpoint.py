"""Sink endpoints: a URL checked the way the HTTP client reads it at send time, its `user:password@` turned into
HTTP basic auth, and the scrubbing that keeps URLs, hosts, tokens and passwords out of every error and log line.

Basic auth comes from the userinfo percent-decoded and UTF-8 encoded (RFC 7617's charset), as Go's HTTP client
(so Alertmanager) sends it; the userinfo is taken out of the URL sent. Errors name the key (`url`,
`webhook_url_file`, ...) and never repeat the URL.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # control characters and whitespace: never valid in a URL or a token
_URL_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?![\d.])")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.%]+\](?::\d+)?")
_HOST_PORT = re.compile(r"(?<![\w.-])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+:\d{1,5}(?!\d)")
_TOKEN_LIKE = re.compile(r"(?=.*[^A-Za-z]).{8,}")  # 8 characters or more, not only letters: not a plain word
_MAX_DETAIL = 200  # characters of a cause (exception text, answer body) kept in an error message
_SHORT = 6  # hidden strings shorter than this are hidden only where they stand as a word of their own


@dataclass(frozen=True, slots=True)
class Target:
    """An endpoint as requests go to it: the URL without userinfo, the `Authorization` value its userinfo
    gives (None: none), and the strings no error may repeat (the URL and its parts)."""

    url: str
    authorization: str | None
    hidden: tuple[str, ...]

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """`extra` plus the basic auth of the userinfo, if any."""
        out = dict(extra or {})
        if self.authorization is not None:
            out["Authorization"] = self.authorization
        return out


def http_target(url: str, key: str, *, query: bool = True) -> Target:
    """Check `url` the way the HTTP client will read it at send time and split off its userinfo. ValueError
    names `key` (none when "": a field validator, whose field pydantic names) and never repeats the URL (it may
    be a secret). `query=False`: a base URL, no query or fragment."""
    where = f"{key}: " if key else ""
    if _CONTROL.search(url):
        raise ValueError(f"{where}the URL contains a space or a control character")
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"{where}must be an absolute http:// or https:// URL")
    if not query and (parts.query or parts.fragment):
        raise ValueError(f"{where}a base URL cannot have a query (?) or fragment (#)")
    if not parts.hostname:
        raise ValueError(f"{where}the URL has no host")
    import yarl  # noqa: PLC0415 (on use: a config whose URLs are all in files is checked without it)

    try:
        port = parts.port
        parsed = yarl.URL(url)
    except ValueError:
        raise ValueError(f"{where}not a valid URL (its host or port cannot be read)") from None
    if not parsed.host:
        raise ValueError(f"{where}the URL has no host")
    if port == 0:
        raise ValueError(f"{where}the port must be 1 to 65535")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    authorization = None
    hidden = [url, parts.netloc, hostport, parts.hostname, parts.path, parts.query]
    # a token in the URL is usually one path segment or query value (`/services/T000/B000/XXXX`, `?key=...`)
    hidden += [t for t in re.split(r"[/?&=;]", f"{parts.path}?{parts.query}") if _TOKEN_LIKE.fullmatch(t)]
    if at:
        raw_user, _, raw_password = userinfo.partition(":")
        try:
            user, password = unquote(raw_user, errors="strict"), unquote(raw_password, errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"{where}the user:password in the URL is not UTF-8 once percent-decoded") from None
        if ":" in user:  # RFC 7617: the user id cannot contain a colon
            raise ValueError(f"{where}the user name in the URL cannot contain ':' (%3A)")
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {credentials}"
        start = len(parts.scheme) + 3  # after "scheme://"
        url = url[:start] + url[start + len(userinfo) + 1 :]
        hidden += [url, userinfo, raw_user, raw_password, user, password, credentials]
    return Target(url, authorization, hidden_strings(hidden))


def refuse_two_auths(url: str | None, key: str, other: str) -> None:
    """Config check: a URL with userinfo (basic auth) and `other` (a bearer token) are one auth too many."""
    if url is not None and urlsplit(url).netloc.rpartition("@")[1]:
        raise ValueError(
            f"{key}: the URL carries user:password@ (basic auth) and {other} is set too; set only one way to "
            "authenticate"
        )


def check_token(token: str, key: str) -> None:
    """A token sent in a header: not empty, no whitespace or control character (the HTTP client refuses
    them at send time)."""
    if not token:
        raise ValueError(f"{key}: empty")
    if _CONTROL.search(token):
        raise ValueError(f"{key}: contains a space or a control character")


def hidden_strings(values: Iterable[str | None]) -> tuple[str, ...]:
    """Non-trivial strings to scrub, longest first (so a URL goes before its parts)."""
    found = {v for v in values if v and v != "/"}
    return tuple(sorted(found, key=len, reverse=True))


def scrub(text: str, hidden: Iterable[str] = ()) -> str:
    """`text` on one line, at most _MAX_DETAIL characters, without the `hidden` strings (and their
    percent-encoded forms), URLs, IP addresses or host:port: safe to log and to keep in a dead letter."""
    text = " ".join(text.split())
    for value in hidden_strings(h for v in hidden for h in (v, quote(v, safe="/"))):
        if len(value) >= _SHORT:
            text = text.replace(value, "***")
        else:  # a short host or user name ("am") only as a word of its own: "name" stays readable
            text = re.sub(rf"(?<![\w.-]){re.escape(value)}(?![\w-])", "***", text)
    for pattern, mark in ((_URL_TEXT, "<url>"), (_IPV6, "<address>"), (_IPV4, "<address>"), (_HOST_PORT, "<host>")):
        text = pattern.sub(mark, text)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def describe(exc: BaseException, hidden: Iterable[str] = ()) -> str:
    """`ExceptionType: scrubbed message` (just the type when it says nothing)."""
    text = scrub(str(exc), hidden)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
