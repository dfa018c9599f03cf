"""Secrets in motion: signed tickets and sessions, and store credentials encrypted at rest.

Both derive their keys from ``WOOSTORE_SECRET_KEY``, each under its own purpose, so a value
made for one purpose is useless for the other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from itsdangerous import BadSignature, URLSafeTimedSerializer

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

# A ticket only opens a stream (an open stream re-checks its key by itself), and it travels in
# a URL: a minute is enough, and leaves a ticket seen in a URL little time to be useful.
TICKET_TTL_SECONDS = 60
SESSION_TTL_SECONDS = 12 * 3600


def _derive(secret_key: str, purpose: str) -> bytes:
    return hashlib.sha256(f"woostore:{purpose}:{secret_key}".encode()).digest()


class CredentialCipher:
    def __init__(self, secret_key: str) -> None:
        self._key = base64.urlsafe_b64encode(_derive(secret_key, "credentials"))

    @cached_property
    def _fernet(self) -> Fernet:
        # Loaded at first use: loading cryptography costs a process about 7 MB, and of the
        # services only the provisioner encrypts credentials; the API reads one only when
        # an owner asks for a store's password.
        from cryptography.fernet import Fernet

        return Fernet(self._key)

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()


class InvalidTicket(Exception):
    pass


@dataclass(frozen=True)
class OpenedTicket:
    """A ticket whose signature and age were checked."""

    subject: str
    # Random, so a use can be remembered (an event ticket opens one stream, once); None in
    # what was signed before tickets had one (a session cookie stays valid for its 12 hours).
    id: str | None
    expires_at: datetime


class TicketSigner:
    """Signed, timed tokens naming a subject: short-lived event-stream tickets (an
    EventSource cannot send headers) and the dashboard's session cookie. Each ``purpose``
    has its own key, so a ticket is never accepted as a session or the other way round."""

    def __init__(
        self, secret_key: str, purpose: str = "event-ticket", max_age: int = TICKET_TTL_SECONDS
    ) -> None:
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(_derive(secret_key, purpose).hex(), salt=purpose)

    def issue(self, subject: str) -> str:
        return self._serializer.dumps({"sub": subject, "id": secrets.token_hex(16)})

    def open(self, ticket: str, max_age: int | None = None) -> OpenedTicket:
        """A valid ticket, with what it takes to use it only once."""
        age = max_age or self.max_age
        try:
            payload, signed_at = self._serializer.loads(ticket, max_age=age, return_timestamp=True)
            return OpenedTicket(
                subject=str(payload["sub"]),
                id=str(payload["id"]) if "id" in payload else None,
                expires_at=signed_at + timedelta(seconds=age),
            )
        except (BadSignature, KeyError, TypeError) as error:
            raise InvalidTicket("invalid or expired ticket") from error

    def verify(self, ticket: str, max_age: int | None = None) -> str:
        """The subject of a valid ticket or session."""
        return self.open(ticket, max_age).subject


def generate_password(length: int = 24) -> str:
    return secrets.token_urlsafe(length)[:length]


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def fingerprint(secret_key: str, value: str) -> str:
    """Names a secret value without revealing anything about it: an HMAC under a key derived
    from the secret key, so without that key nobody can tell which value it names, nor test a
    guess against it."""
    return hmac.new(_derive(secret_key, "fingerprint"), value.encode(), hashlib.sha256).hexdigest()


def tokens_match(given: str, expected: str) -> bool:
    return bool(expected) and secrets.compare_digest(given.encode(), expected.encode())


def backup_password(secret_key: str, store_id: uuid.UUID) -> str:
    """The password of one store's backup repository: another store's (another tenant's)
    opens nothing of it."""
    return _derive(secret_key, f"backups:{store_id}").hex()
