"""HTTP to the WooStore API and its event stream. Nothing here prints.

Errors come out as two exceptions: :class:`ApiError` when a server answered with an error
(RFC 9457 problem details), :class:`Unreachable` when no server answered at all.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import httpx
from httpx_sse import EventSource, connect_sse

TYPE_PREFIX = "io.woostore.store."
PING_SECONDS = 15  # the notifier's heartbeat: a stream silent for 3 of them is dead
GIVE_UP_SECONDS = 60  # how long a dropped stream is retried before giving up
# A read answered 503 with Retry-After (the API's database restarting, say) is asked again
# after the wait it names, at most this many times, unless it names a wait over the longest.
READS_AGAIN = 3
LONGEST_WAIT_SECONDS = 10


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        problem: dict[str, Any] | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(f"{title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.problem = problem  # the RFC 9457 body, as the API sent it
        self.retry_after = retry_after  # seconds, when the API says asking again may do

    @classmethod
    def of(cls, response: httpx.Response) -> ApiError:
        response.read()
        try:
            body = response.json()
        except ValueError:
            body = None
        retry_after = _seconds(response.headers.get("Retry-After", ""))
        if isinstance(body, dict) and "title" in body:
            title, detail = str(body["title"]), str(body.get("detail", ""))
            return cls(response.status_code, title, detail, body, retry_after)
        return cls(
            response.status_code, f"HTTP {response.status_code}", response.reason_phrase,
            retry_after=retry_after,
        )  # fmt: skip


def _seconds(retry_after: str) -> str | None:
    """A Retry-After in seconds, as the API sends it; None for a date (a proxy's) or none."""
    return retry_after if re.fullmatch(r"[0-9]{1,6}", retry_after) else None


def _wait_asked_for(response: httpx.Response) -> float | None:
    """The seconds a 503 asks its client to wait before asking again, if it asks at all."""
    said = _seconds(response.headers.get("Retry-After", ""))
    if response.status_code != 503 or said is None:
        return None
    wait = float(said)
    return wait if wait <= LONGEST_WAIT_SECONDS else None


class StreamEnded(ApiError):
    """The notifier ended the event stream for good (its last frame, ``end``): its key was
    refused from then on. ``reason`` and ``cause`` (a key revoked, its tenant suspended or
    deleted; empty from a notifier older than it) are the frame's, for programs."""

    def __init__(self, reason: str, cause: str, detail: str) -> None:
        super().__init__(403, "Access withdrawn", detail)
        self.reason = reason
        self.cause = cause


class Unreachable(Exception):
    """No answer: the server is down, the URL is wrong, or the network is."""


class StreamLost(Unreachable):
    """The event stream dropped and did not answer again for ``GIVE_UP_SECONDS``; ``after``
    is the last event it sent, where a new one may resume."""

    def __init__(self, message: str, after: int) -> None:
        super().__init__(message)
        self.after = after


def _unreachable(url: str | httpx.URL, error: Exception) -> Unreachable:
    reason = " ".join(str(error).split()) or type(error).__name__
    return Unreachable(f"cannot reach {url} ({reason})")


@dataclass(frozen=True)
class Event:
    """A CloudEvent from the stream, with its stream sequence (the SSE id)."""

    sequence: int
    cloudevent: dict[str, Any]

    @property
    def kind(self) -> str:
        """``progress``, ``ready``... (the type without its ``io.woostore.store.`` prefix)."""
        return str(self.cloudevent["type"]).removeprefix(TYPE_PREFIX)

    @property
    def store_id(self) -> str:
        return str(self.cloudevent.get("subject", ""))

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.cloudevent.get("data") or {}
        return data


@dataclass(frozen=True)
class Gap:
    """The stream could not resume where it was (the events in between aged out, or the
    event stream was lost and started again): what happened meanwhile must be read again."""

    sequence: int  # where the stream goes on from
    reason: str


PAGE_MAX = 500  # the most items the API gives a page


# What the audit log records as the user agent: the CLI by name, not as httpx.
USER_AGENT = f"woostore-cli/{version('woostore-cli')}"


class Api:
    def __init__(self, url: str, token: str | None, timeout: float = 10) -> None:
        self.url = url.rstrip("/")
        headers = {"User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(headers=headers, timeout=timeout)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """``path`` under /api/v1; returns the decoded JSON body."""
        url = f"{self.url}/api/v1{path}"
        for _ in range(READS_AGAIN if method == "GET" else 0):
            response = self._request(method, url, **kwargs)
            wait = _wait_asked_for(response)
            if wait is None:
                break
            time.sleep(wait)
        else:
            response = self._request(method, url, **kwargs)
        if response.is_error:
            raise ApiError.of(response)
        return response.json()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, url, **kwargs)
        except (httpx.TransportError, httpx.InvalidURL) as error:
            raise _unreachable(self.url, error) from error

    def page_through(self, path: str, params: dict[str, Any], limit: int) -> dict[str, Any]:
        """Up to ``limit`` items of a paged list (``GET path``), following its cursors, as one
        page: ``items``, and ``next_cursor`` when more are left."""
        items: list[Any] = []
        cursor = None
        while True:
            size = min(limit - len(items), PAGE_MAX)
            at: dict[str, str] = {"cursor": cursor} if cursor else {}
            page = self.call("GET", path, params={**params, "limit": size, **at})
            items += page["items"]
            cursor = page.get("next_cursor")
            if cursor is None or len(items) >= limit:
                return {"items": items, "next_cursor": cursor}

    def events(
        self,
        after: int | None,
        *,
        store: str | None = None,
        tenant: str | None = None,
        idle: float | None = None,
        notice: Callable[[str], None] = lambda _: None,
    ) -> EventStream:
        """The event stream from after sequence ``after`` (None: only new events), of one
        store's events if ``store`` is given, of one tenant's if ``tenant`` is (callers
        still pick theirs by subject: a notifier older than ``store_id`` sends every event).

        With ``idle``, iteration stops once no event came for that many seconds.
        """
        platform = self.call("GET", "/platform")
        url = httpx.URL(self.url).join(platform["events_url"])  # may be relative to the API
        narrowed = {"store_id": store, "tenant_id": tenant}
        asked = {name: value for name, value in narrowed.items() if value is not None}
        return EventStream(self.http, url, after, idle, notice, asked)


class EventStream:
    """The notifier's Server-Sent Events, resumed after the last event seen when they drop.

    Entering connects (so a caller can connect first, then act, and miss nothing).
    """

    def __init__(
        self,
        http: httpx.Client,
        url: httpx.URL,
        after: int | None,
        idle: float | None,
        notice: Callable[[str], None],
        narrowed: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.after = after
        self.narrowed = narrowed or {}  # ?store_id=, ?tenant_id=
        self._http = http
        self._idle = idle
        self._notice = notice
        self._retry = 2.0  # until the server says otherwise
        self._connection = ExitStack()
        self._source: EventSource | None = None

    def __enter__(self) -> EventStream:
        try:
            self._connect()
        except httpx.TransportError as error:
            raise _unreachable(self.url, error) from error
        return self

    def __exit__(self, *_: object) -> None:
        self._connection.close()

    def _connect(self) -> None:
        self._connection.close()
        params = dict(self.narrowed)
        if self.after is not None:
            params["last_event_id"] = str(self.after)
        timeout = httpx.Timeout(10, read=self._idle or 3 * PING_SECONDS)
        source = self._connection.enter_context(
            connect_sse(self._http, "GET", str(self.url), params=params, timeout=timeout)
        )
        if source.response.is_error:
            raise ApiError.of(source.response)
        if not source.response.headers.get("content-type", "").startswith("text/event-stream"):
            raise ApiError(source.response.status_code, "Not an event stream", str(self.url))
        self._source = source

    def __iter__(self) -> Iterator[Event | Gap]:
        while True:
            assert self._source is not None, "iterate inside `with`"
            try:
                for message in self._source.iter_sse():
                    if message.retry is not None:
                        self._retry = message.retry / 1000
                    if message.id:  # where the stream is, even from a frame with no event
                        self.after = int(message.id)
                    if message.event == "refetch":
                        yield Gap(int(message.id), json.loads(message.data).get("reason", ""))
                    elif message.event == "end":  # ended for good: reconnecting is refused
                        why = json.loads(message.data)
                        raise StreamEnded(
                            str(why.get("reason", "")),
                            str(why.get("cause", "")),
                            why.get("detail", "the stream ended"),
                        )
                    # Another name: a frame of a later notifier's, for clients that know it.
                    elif message.event == "message" and message.data:
                        yield Event(int(message.id), json.loads(message.data))
                reason = "the server closed it"
            except httpx.ReadTimeout:
                if self._idle is not None:
                    return
                reason = f"nothing for {3 * PING_SECONDS} s"
            except httpx.TransportError as error:
                reason = str(error) or type(error).__name__
            self._reconnect(reason)

    def _reconnect(self, reason: str) -> None:
        # No id yet (a notifier from before streams told where they start): replay the whole
        # stream, callers pick their events by subject.
        self.after = self.after or 0
        self._notice(f"event stream lost ({reason}); reconnecting after event {self.after}")
        give_up_at = time.monotonic() + GIVE_UP_SECONDS
        while True:
            time.sleep(self._retry)
            try:
                self._connect()
                return
            except (httpx.TransportError, ApiError) as error:
                if isinstance(error, ApiError) and error.status < 500:
                    raise
                if time.monotonic() > give_up_at:
                    raise StreamLost(
                        f"lost the event stream at {self.url} ({error})", self.after
                    ) from error
