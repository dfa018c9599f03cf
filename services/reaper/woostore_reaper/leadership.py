"""One acting reaper: a PostgreSQL advisory lock, held by the reaper's one connection.

Whichever reaper holds the lock acts; the others wait and try again each pass. If the
leader dies or loses its connection, PostgreSQL releases the lock and another takes over.

A reaper works on a single connection (:func:`reaper_database`), kept open however long it
sits idle, and its session holds the lock. So the passes run on the session that holds the
lock, and a leader whose connection was lost (and the lock with it) finds out as its next
pass begins, before it acts again. It also keeps one PostgreSQL process rather than two (15-19 MB
of RSS, docs/benchmarks.md, the footprint of ``make run``).

The lock is a session's, not a transaction's: no transaction is left open between passes,
which an operator's ``idle_in_transaction_session_timeout`` (common on managed PostgreSQL)
would end by cutting the session, and the lock with it.
"""

from __future__ import annotations

import contextlib
import zlib

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from woostore_shared.db import Database
from woostore_shared.logging import get_logger
from woostore_shared.settings import Settings

log = get_logger(__name__)
LOCK_KEY = zlib.crc32(b"woostore-reaper")  # any constant; the name says whose it is

# Kept if this session holds it, else taken if free. Not taken again when held: a session
# lock taken twice must be released twice. pg_locks shows a bigint key as its high half
# (classid, 0 here) and its low half (objid), objsubid 1.
_KEEP_OR_TAKE = text(
    "SELECT CASE WHEN EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'"
    " AND pid = pg_backend_pid() AND classid = 0 AND objid = :key AND objsubid = 1)"
    " THEN true ELSE pg_try_advisory_lock(:key) END"
)

_RELEASE = text("SELECT pg_advisory_unlock(:key)")


def reaper_database(settings: Settings) -> Database:
    """The reaper's database: one connection, which PostgreSQL never ends for being idle
    (whatever ``database_idle_seconds`` says), since its session holds the leader lock."""
    return Database(settings.database_url, "woostore-reaper", closed_when_idle=0, connections=1)


class LeaderLock:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.leading = False

    async def held(self) -> bool:
        """Whether this reaper leads now: keeps the lock, or takes it if free."""
        try:
            async with self.db.session() as session:
                connection = await session.connection()
                leading = bool(
                    (await connection.execute(_KEEP_OR_TAKE, {"key": LOCK_KEY})).scalar()
                )
        except SQLAlchemyError as error:
            log.warning("the leader lock could not be looked at", error=type(error).__name__)
            leading = False
        if self.leading and not leading:
            log.warning("lost the leader lock")
        elif leading and not self.leading:
            log.info("leading: this reaper acts")
        self.leading = leading
        return leading

    async def release(self) -> None:
        """Let another reaper take over at once, rather than when this one's session ends."""
        if self.leading:
            self.leading = False
            with contextlib.suppress(SQLAlchemyError):  # lost with the connection, then
                async with self.db.session() as session:
                    connection = await session.connection()
                    await connection.execute(_RELEASE, {"key": LOCK_KEY})
