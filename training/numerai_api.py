"""The one place the project talks to numerapi: the API host (env `NUMERAI_API_URL`), the client, and GraphQL
calls whose failures become one-sentence `NmuError`s instead of numerapi's log lines and KeyErrors.

numerapi 2.20.8 reads the host from the module constant `numerapi.base_api.API_TOURNAMENT_URL` at call time,
so pointing it elsewhere (a proxy, or the loopback server of the tests) is one assignment before each call.
Its `raw_query` swallows transport errors (connection refused, HTTP 4xx/5xx after its retries): it logs them
and returns `{}`. `call` below captures those log records so the error can say what actually happened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numerapi
import numerapi.base_api
import requests

from validation.errors import NmuError

API_URL_ENV = "NUMERAI_API_URL"
DEFAULT_API_URL = "https://api-tournament.numer.ai"

T = TypeVar("T")


class GraphQLError(NmuError):
    """Numerai read the request and answered it with a GraphQL error: it was refused, nothing was done. (A call that
    got no answer, a 5xx, a reset or a timeout, raises plain NmuError: whether it was done is not known.)"""


class KeysRejected(NmuError):
    """Numerai refused the API keys (authentication failed); the message says which step noticed."""


def api_url() -> str:
    """The GraphQL endpoint to use: env `NUMERAI_API_URL` if set, else Numerai's public API."""
    return os.environ.get(API_URL_ENV, "").strip() or DEFAULT_API_URL


def apply_api_url() -> str:
    """Point numerapi at `api_url()` (it reads `numerapi.base_api.API_TOURNAMENT_URL` at call time)."""
    url = api_url()
    numerapi.base_api.API_TOURNAMENT_URL = url
    return url


def host_of(url: str) -> str:
    """`scheme://host[:port]` of a URL: safe to print (drops paths and signed query strings)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "<no host>"


def scrub(text: str) -> str:
    """Drop query strings (pre-signed URL signatures) from a message before it is shown."""
    return re.sub(r"\?[^\s)'\"]*", "?…", text)


TRANSFER_RETRIES = 3
"""Retries after a file transfer's first attempt (a data file's GET, the pickle's PUT) that ended in a 5xx or a broken
connection: object stores answer an occasional 503 under load, and a multi-gigabyte train.parquet that breaks once
should not cost the whole download."""
TRANSFER_BACKOFF_SECONDS = 2.0
"""The first wait between transfer attempts; it doubles each retry (2, 4, 8 s: 14 s in all before giving up)."""


class TransientError(Exception):
    """One transfer attempt failed in a way worth trying again (HTTP 5xx, a refused or broken connection); its
    message says how, and `retried` turns the last one into an NmuError."""


def transient(exc: BaseException) -> bool:
    """Whether a requests error may pass if tried again: a refused, reset or broken connection, or a timeout. An
    invalid address, a certificate that fails verification or too many redirects fail the same way every time."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError))


def retried(attempt: Callable[[], T], what: str, advice: str) -> T:
    """`attempt()`'s result, trying it up to 1 + TRANSFER_RETRIES times while it raises TransientError, with doubling
    waits between; then NmuError: "`what` failed with <the last cause> after N attempts; `advice`". Other errors (an
    HTTP 4xx raised as NmuError, a full disk) pass through at once."""
    delay = TRANSFER_BACKOFF_SECONDS
    attempts = TRANSFER_RETRIES + 1
    last = ""
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except TransientError as exc:
            last = str(exc)
            if number == attempts:
                break
            logging.getLogger("training").warning("%s failed with %s; trying again in %.0f s (attempt %d of %d).",
                                                  what, last, delay, number + 1, attempts)
            time.sleep(delay)
            delay *= 2
    raise NmuError(f"{what} failed with {last} after {attempts} attempts; {advice}")


def make_client(public_id: str | None = None, secret_key: str | None = None) -> numerapi.NumerAPI:
    """A numerapi client for Numerai Classic pointed at `api_url()`, quiet (no tqdm bars, warnings only)."""
    apply_api_url()
    if public_id and secret_key:
        return numerapi.NumerAPI(public_id, secret_key, verbosity="warning", show_progress_bars=False)
    return numerapi.NumerAPI(verbosity="warning", show_progress_bars=False)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def _numerapi_logs() -> Iterator[_Collect]:
    """Collect numerapi's warning/error log lines (instead of printing them) for the duration of a call."""
    logger = logging.getLogger("numerapi")
    handler = _Collect()
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate


def _looks_like_auth_failure(text: str) -> bool:
    lowered = text.lower()
    return any(
        word in lowered
        for word in ("401", "403", "unauthorized", "forbidden", "not authenticated", "authentication",
                     "invalid api key", "invalid token", "api key", "session is invalid")
    )


def call(step: str, func: Callable[[], T], *, auth: bool = False, first_auth: bool = False) -> T:
    """Run one numerapi call and turn every way it can fail into an NmuError naming `step` and the cause.

    `auth=True` marks a call made with the user's keys: an authentication failure there (HTTP 401/403 or
    a message about authentication) raises `KeysRejected`. `first_auth=True` marks the first such call
    (e.g. the account's models), where any GraphQL error can only mean the keys. numerapi signals a GraphQL
    error as ValueError(message) and a transport failure as an empty result (KeyError/TypeError when
    indexing it), with the cause only in its log.
    """
    url = api_url()
    graphql_error = False
    with _numerapi_logs() as logs:
        try:
            return func()
        except NmuError:
            raise
        except ValueError as exc:  # GraphQL "errors" (or numerapi's own argument checks)
            cause = str(exc) or "no message"
            graphql_error = True
        except (KeyError, TypeError, IndexError, AttributeError) as exc:  # {}, null data, or an answer of another shape
            cause = "; ".join(logs.messages) or f"unexpected answer ({type(exc).__name__}: {exc})"
        except OSError as exc:  # requests' ConnectionError etc. are OSErrors
            cause = f"{type(exc).__name__}: {exc}"
    cause = scrub(cause).rstrip(". ")
    if auth and (_looks_like_auth_failure(cause) or (first_auth and graphql_error)):
        raise KeysRejected(
            f"Numerai rejected the API keys (NUMERAI_PUBLIC_ID / NUMERAI_SECRET_KEY) during {step} at "
            f"{host_of(url)} ({cause}); check the keys and that they have the upload scope."
        )
    raise (GraphQLError if graphql_error else NmuError)(f"{step} failed at {host_of(url)}: {cause}.")


def raw(api: numerapi.NumerAPI, step: str, query: str, variables: dict[str, Any] | None = None,
        *, auth: bool = False, field: str) -> Any:
    """`api.raw_query(...)["data"][field]` through `call`; a missing or null field is an error too."""

    def run() -> Any:
        result = api.raw_query(query, variables, authorization=auth, retries=3, delay=1, backoff=2)
        value = result["data"][field]
        if value is None:
            raise KeyError(field)
        return value

    return call(step, run, auth=auth)
