"""How a service's connections to PostgreSQL behave: the limits on a silent other end (both
ends'), and the session's idle limit. Without SQLAlchemy: ``db.Database`` (SQLAlchemy's pool,
every service but the notifier) and the notifier's ``PlainDatabase`` (psycopg's connections,
none kept) both apply them."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import psycopg

from woostore_shared.settings import Settings

MAX_CONNECTIONS = 15  # a process's, each service's but the reaper's (1: leadership.py)
# How long a request waits for one of them, all in use, before it is refused (the API's 503):
# long past any burst's wait (a create holds one for milliseconds), short of a client's patience.
POOL_WAIT_SECONDS = 10.0
# How long either end of a service's connection waits on a silent other before giving it up.
# An idle connection is probed after 30 s of silence, 10 s apart; what was sent and not
# acknowledged within 30 s fails it. On Linux that limit also ends an idle one at its first
# probe left unanswered (about 40 s in), before the probe count is reached. The kernel's
# defaults are 2 hours and about 15 minutes. The probes also keep a NAT's or a load
# balancer's mapping alive (their idle timeouts are minutes).
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES, UNACKNOWLEDGED_MS = 30, 10, 3, 30_000
# This side's (libpq's parameters; a value the URL gives wins). A database lost without a word
# (its node gone, a NAT's mapping dropped) held a request for those 15 minutes, and opening a
# connection to one waited 130 s (psycopg's default).
CLIENT_SILENCE_LIMITS = {
    "connect_timeout": "10",  # seconds to open a connection, sign-in included
    "keepalives_idle": str(KEEPALIVE_IDLE),
    "keepalives_interval": str(KEEPALIVE_INTERVAL),
    "keepalives_count": str(KEEPALIVE_PROBES),
    "tcp_user_timeout": str(UNACKNOWLEDGED_MS),
}
# PostgreSQL's (its settings, set by each connection as it opens). A service's pod lost with
# its node (no FIN, no RST) kept its sessions open on the server for those 2 hours: its
# connections counted against max_connections, so its replacement could be refused them, and
# the reaper's leader lock stayed held, so no reaper acted.
SERVER_SILENCE_LIMITS = {
    "tcp_keepalives_idle": str(KEEPALIVE_IDLE),
    "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL),
    "tcp_keepalives_count": str(KEEPALIVE_PROBES),
    "tcp_user_timeout": str(UNACKNOWLEDGED_MS),
}
# PostgreSQL ends a service's session idle this long (its idle_session_timeout, PostgreSQL 14
# and newer): a quiet service keeps no server process (15-19 MB each, and counted against
# max_connections). A busy one keeps those it uses: its pool (db.Database's) hands out the
# connection given back last, and drops one idle half this long as it is taken
# (db._look_before_use), so no statement is sent as the server ends its session. (The
# notifier keeps none open; the reaper's one is never ended: it holds the leader lock.)
# WOOSTORE_DATABASE_IDLE_SECONDS sets it for a service (0: never).
CLOSED_WHEN_IDLE: float = Settings.model_fields["database_idle_seconds"].default  # 60 s
IDLE_LIMIT, IDLE_LIMIT_SINCE = "idle_session_timeout", 140000  # PostgreSQL 14


def session_limits(server_version: int, closed_when_idle: float | None = None) -> str:
    """The statement giving PostgreSQL :data:`SERVER_SILENCE_LIMITS` for a new connection's
    session, and ``closed_when_idle``, if given, as its idle limit where it has one (set even
    when 0, never, over any default the server was given): one round trip as it opens,
    outside any transaction. (The ``options`` startup parameter would save it, but
    connection poolers such as PgBouncer refuse a connection that sends it.)"""
    limits = dict(SERVER_SILENCE_LIMITS)
    if closed_when_idle is not None and server_version >= IDLE_LIMIT_SINCE:
        limits[IDLE_LIMIT] = f"{closed_when_idle * 1000:.0f}"  # milliseconds
    settings = ", ".join(
        f"set_config('{name}', '{value}', false)" for name, value in limits.items()
    )
    return f"SELECT {settings}"


class StandaloneStatements(Protocol):
    """A database that lends psycopg's own connection, in autocommit: what the statements
    shared with the notifier, which has no SQLAlchemy, run on (``access``)."""

    def standalone(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]: ...
