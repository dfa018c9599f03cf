"""Who is calling, and what they may see: API keys, the admin token, and principals.

An API key is ``wsk_`` and 12 hex digits (its public prefix, how it is found and shown)
followed by ``_`` and 43 random characters. Only the SHA-256 of the whole key is stored: the
key is random and long, so a slow password hash would add nothing but latency.

The admin token from the settings is the operator's way in before any key exists; it acts
as an admin of the default tenant. Tickets and sessions name a principal by its ``subject``
and are resolved again on use, so a revoked key stops working everywhere; a session signed
out stops working too, wherever a copy of its cookie is. A suspended tenant's keys stop
working the same way until it is resumed.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from woostore_shared.connecting import StandaloneStatements
from woostore_shared.events import Withdrawal
from woostore_shared.secrets import OpenedTicket, fingerprint, sha256_hex, tokens_match
from woostore_shared.vocabulary import DEFAULT_TENANT_ID, Role

KEY_PREFIX = "wsk_"
PREFIX_LENGTH = len(KEY_PREFIX) + 12
ADMIN_TOKEN_ACTOR = "admin-token"  # noqa: S105  (a name for the audit log, not a token)
# Every request with a key or a session runs one of these: plain SQL on psycopg's own
# connection (``standalone``), as the ORM took twice as long, and the notifier has no ORM
# (docs/benchmarks.md, the footprint of ``make run``). The columns are
# those of a principal (``_of_row``), the secret's hash, and whether its tenant is suspended
# (then it is refused, and told why: ``TenantSuspended``). A live key is one not revoked, of
# a tenant not suspended (``_LIVE``).
_KEY = (
    "SELECT k.id, k.prefix, k.role, k.tenant_id, k.secret_sha256,"
    " t.suspended_at IS NOT NULL AS suspended"
    " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
    " WHERE k.prefix = %(prefix)s AND k.revoked_at IS NULL"
)
# Whether an event stream's narrowing ids name what its principal sees: the store (an
# owner's, of its own tenant for a tenant's key: ``own``; of the tenant named with it, if
# one is), and the tenant.
_NARROWED = (
    "SELECT EXISTS (SELECT 1 FROM stores WHERE id = %(store)s AND tenant_id IS NOT NULL"
    " AND (%(own)s::uuid IS NULL OR tenant_id = %(own)s::uuid)"
    " AND (%(tenant)s::uuid IS NULL OR tenant_id = %(tenant)s::uuid)) AS store,"
    " EXISTS (SELECT 1 FROM tenants WHERE id = %(tenant)s) AS tenant"
)
# A session's key, if the key is not revoked and the session not signed out.
_KEY_IN_SESSION = (
    "SELECT k.id, k.prefix, k.role, k.tenant_id, t.suspended_at IS NOT NULL AS suspended"
    " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
    " WHERE k.id = %(key_id)s AND k.revoked_at IS NULL"
    " AND NOT EXISTS (SELECT FROM spent_tickets WHERE id = %(session_id)s)"
)
# A key if it is live: not revoked, of a tenant not suspended (a ticket's subject: a key of a
# suspended tenant is refused without a word).
_LIVE = (
    "SELECT k.id, k.prefix, k.role, k.tenant_id, FALSE AS suspended FROM api_keys k JOIN tenants t"
    " ON t.id = k.tenant_id AND t.suspended_at IS NULL"
    " WHERE k.id = %(id)s AND k.revoked_at IS NULL"
)
# Whether each of some keys still opens anything, and if not why: the sweep of open streams
# ends each one whose key does not, and tells its client why.
_STANDING = (
    "SELECT k.id, k.revoked_at IS NOT NULL AS revoked, t.suspended_at IS NOT NULL AS suspended,"
    " t.deleted_at IS NOT NULL AS deleted"
    " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = ANY(%(ids)s)"
)
_SPEND = (
    "INSERT INTO spent_tickets (id, expires_at)"
    " SELECT * FROM unnest(%(ids)s::text[], %(expires)s::timestamptz[])"
    " ON CONFLICT (id) DO NOTHING RETURNING id"
)
_SPENT = "SELECT EXISTS (SELECT FROM spent_tickets WHERE id = %(id)s)"


@dataclass(frozen=True)
class Principal:
    subject: str  # what tickets and sessions carry: a key's id, or the admin token's
    actor: str  # what the audit log shows: a key's prefix, or "admin-token"
    role: Role
    tenant_id: uuid.UUID

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def sees(self, tenant_id: uuid.UUID | None) -> bool:
        """Whether this principal may see what ``tenant_id`` owns. What no tenant owns (a
        store in the warm pool) nobody sees, admins included: it is nobody's store yet."""
        return tenant_id is not None and (self.is_admin or tenant_id == self.tenant_id)


@dataclass(frozen=True)
class NewKey:
    token: str  # shown to its owner once, never stored
    prefix: str
    secret_sha256: str


def new_key() -> NewKey:
    prefix = KEY_PREFIX + secrets.token_hex(6)
    token = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(token=token, prefix=prefix, secret_sha256=sha256_hex(token))


class TenantSuspended(Exception):
    """A key (or its session) shown by its holder, of a tenant an admin has suspended: it is
    refused like a revoked key, and its holder told why (it works again once resumed), in
    these words (401, from the API and the notifier alike)."""

    detail = "this key's tenant is suspended: its keys are refused until an admin resumes it"

    def __init__(self, refused: Principal) -> None:
        super().__init__(refused.tenant_id)
        self.refused = refused  # whose key it is: signing out still ends its session


def _of_row(row: dict[str, Any]) -> Principal:
    """The principal of a key read by ``_KEY`` or ``_KEY_IN_SESSION``."""
    principal = Principal(
        subject=str(row["id"]),
        actor=row["prefix"],
        role=Role(row["role"]),
        tenant_id=row["tenant_id"],
    )
    if row["suspended"]:
        raise TenantSuspended(principal)
    return principal


async def spend(
    connection: psycopg.AsyncConnection[Any], tickets: Sequence[OpenedTicket]
) -> set[str]:
    """Record ``tickets`` as spent, in ``connection``'s transaction if it is in one: an event
    ticket once it has opened a stream, a session once it is signed out. The ids spent here
    for the first time."""
    spent = [t for t in tickets if t.id is not None]
    if not spent:
        return set()
    params = {"ids": [t.id for t in spent], "expires": [t.expires_at for t in spent]}
    async with connection.cursor() as cursor:
        await cursor.execute(_SPEND, params)
        return {row[0] for row in await cursor.fetchall()}


def _why_withdrawn(standing: dict[str, Any] | None) -> Withdrawal | None:
    """Why a key (its row of ``_STANDING``, None if there is none) opens nothing; None if it
    still does."""
    if standing is None:
        return "key-revoked"  # no such key
    if standing["deleted"]:  # (its tenant's deletion revoked it too)
        return "tenant-deleted"
    if standing["revoked"]:
        return "key-revoked"
    return "tenant-suspended" if standing["suspended"] else None


class Authenticator:
    """Turns a bearer token, or the subject of a ticket or session, into a principal."""

    def __init__(self, db: StandaloneStatements, *, admin_token: str, secret_key: str) -> None:
        self._db = db
        self._admin_token = admin_token
        # Tickets and sessions are signed, not encrypted: anyone holding one reads its subject.
        # A keyed fingerprint names the admin token and tells them nothing about it. A new token
        # or a new secret key changes it, and so ends the sessions opened before.
        self.admin_subject = f"{ADMIN_TOKEN_ACTOR}:{fingerprint(secret_key, admin_token)}"

    def _admin(self) -> Principal:
        return Principal(
            subject=self.admin_subject,
            actor=ADMIN_TOKEN_ACTOR,
            role=Role.ADMIN,
            tenant_id=DEFAULT_TENANT_ID,
        )

    async def by_token(self, token: str) -> Principal | None:
        if tokens_match(token, self._admin_token):
            return self._admin()
        if not token.startswith(KEY_PREFIX) or len(token) <= PREFIX_LENGTH:
            return None
        async with (
            self._db.standalone() as connection,
            connection.cursor(row_factory=dict_row) as found,
        ):
            await found.execute(_KEY, {"prefix": token[:PREFIX_LENGTH]})
            row = await found.fetchone()
        if row is None or not tokens_match(sha256_hex(token), row["secret_sha256"]):
            return None
        return _of_row(row)

    async def spend_tickets(self, tickets: Sequence[OpenedTicket]) -> set[str]:
        """The ids of ``tickets`` used here for the first time, spent now: one statement for
        any number of them. A ticket travels in a URL; once it has opened a stream, finding
        it in a log or a history is worth nothing. Every notifier replica shares the record,
        and it outlives the ticket's expiry only until the reaper forgets it."""
        async with self._db.standalone() as connection:  # one statement: its own transaction
            return await spend(connection, tickets)

    async def by_session(self, opened: OpenedTicket) -> Principal | None:
        """The principal of a dashboard session: none once it was signed out (its id spent,
        as a used ticket's is) or its key revoked. Every session has an id: those signed
        before sessions had one (2026-12-01) have expired. One round trip: every dashboard
        request asks this."""
        if opened.id is None:
            return None
        if tokens_match(opened.subject, self.admin_subject):
            async with self._db.standalone() as connection, connection.cursor() as found:
                await found.execute(_SPENT, {"id": opened.id})
                row = await found.fetchone()
            return None if row is not None and row[0] else self._admin()
        try:
            key_id = uuid.UUID(opened.subject)
        except ValueError:
            return None
        params = {"key_id": key_id, "session_id": opened.id}
        async with (
            self._db.standalone() as connection,
            connection.cursor(row_factory=dict_row) as found,
        ):
            await found.execute(_KEY_IN_SESSION, params)
            row = await found.fetchone()
        return None if row is None else _of_row(row)

    async def unseen(
        self, principal: Principal, store: uuid.UUID | None, tenant: uuid.UUID | None
    ) -> str | None:
        """What of a narrowed event stream's store and tenant ``principal`` finds nothing
        of, as the API names it in a 404 ("store <id>", "tenant <id>"); None if it sees
        both. A stream of either would say nothing, for ever. (A store of another tenant
        than the one named with it is not found either: the stream would be of neither.)"""
        own = None if principal.is_admin else principal.tenant_id
        async with self._db.standalone() as connection, connection.cursor() as found:
            await found.execute(_NARROWED, {"store": store, "tenant": tenant, "own": own})
            row = await found.fetchone()
        store_seen, tenant_found = row if row is not None else (False, False)
        if store is not None and not store_seen:
            return f"store {store}"
        if tenant is not None and not tenant_found:
            return f"tenant {tenant}"
        return None

    async def withdrawn(self, subjects: Collection[str]) -> dict[str, Withdrawal]:
        """Which of ``subjects`` name a principal no more, and why (``_STANDING``): one query
        for any number of them."""
        gone: dict[str, Withdrawal] = {}
        asked: dict[uuid.UUID, str] = {}
        for subject in subjects:
            if tokens_match(subject, self.admin_subject):
                continue
            try:
                asked[uuid.UUID(subject)] = subject
            except ValueError:  # the admin token's, from before its token or secret key changed
                gone[subject] = "key-revoked"
        if not asked:
            return gone
        async with (
            self._db.standalone() as connection,
            connection.cursor(row_factory=dict_row) as found,
        ):
            await found.execute(_STANDING, {"ids": list(asked)})
            standing = {row["id"]: row for row in await found.fetchall()}
        for key_id, subject in asked.items():
            if (why := _why_withdrawn(standing.get(key_id))) is not None:
                gone[subject] = why
        return gone

    async def by_subject(self, subject: str) -> Principal | None:
        if tokens_match(subject, self.admin_subject):
            return self._admin()
        try:
            key_id = uuid.UUID(subject)
        except ValueError:
            return None
        async with (
            self._db.standalone() as connection,
            connection.cursor(row_factory=dict_row) as found,
        ):
            await found.execute(_LIVE, {"id": key_id})
            row = await found.fetchone()
        return None if row is None else _of_row(row)
