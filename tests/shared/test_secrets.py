"""Event-stream tickets and credentials encrypted at rest, both keyed from the secret key."""

from __future__ import annotations

import hashlib
import string
import subprocess
import sys
import time

import pytest
from cryptography.fernet import InvalidToken
from itsdangerous import TimestampSigner

from woostore_shared.secrets import (
    TICKET_TTL_SECONDS,
    CredentialCipher,
    InvalidTicket,
    TicketSigner,
    fingerprint,
    generate_password,
    tokens_match,
)

KEY = "a-secret-key"


def issued_seconds_ago(
    signer: TicketSigner, seconds: int, monkeypatch: pytest.MonkeyPatch, subject: str = "admin"
) -> str:
    issued_at = int(time.time()) - seconds
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda _self: issued_at)
        return signer.issue(subject)


# --- tickets ------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["admin", "tenant:42", "Zoë"])
def test_a_ticket_verifies_to_its_subject(subject: str) -> None:
    signer = TicketSigner(KEY)

    assert signer.verify(signer.issue(subject)) == subject


def test_each_ticket_has_its_own_id_and_says_when_it_expires() -> None:
    signer = TicketSigner(KEY)
    before = time.time()

    first, second = signer.open(signer.issue("admin")), signer.open(signer.issue("admin"))

    assert first.subject == second.subject == "admin"
    assert first.id
    assert second.id
    assert first.id != second.id  # a second ticket of the same key is not the first one spent
    assert before - 1 <= first.expires_at.timestamp() - TICKET_TTL_SECONDS <= time.time()


def test_a_ticket_verifies_with_another_signer_of_the_same_key() -> None:
    """Any notifier replica (or the same one after a restart) accepts the API's tickets."""
    assert TicketSigner(KEY).verify(TicketSigner(KEY).issue("admin")) == "admin"


def test_a_ticket_lives_one_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = TicketSigner(KEY)
    nearly_expired = issued_seconds_ago(signer, 60 - 10, monkeypatch)
    expired = issued_seconds_ago(signer, 60 + 10, monkeypatch)

    assert TICKET_TTL_SECONDS == 60

    assert signer.verify(nearly_expired) == "admin"
    with pytest.raises(InvalidTicket):
        signer.verify(expired)


def test_a_shorter_max_age_expires_a_ticket_sooner(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = TicketSigner(KEY)
    ticket = issued_seconds_ago(signer, 30, monkeypatch)

    assert signer.verify(ticket) == "admin"
    with pytest.raises(InvalidTicket):
        signer.verify(ticket, max_age=10)


def test_a_tampered_ticket_is_rejected() -> None:
    signer = TicketSigner(KEY)
    payload, timestamp, signature = signer.issue("admin").split(".")
    intruder_payload = signer.issue("intruder").split(".")[0]
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    tampered = [
        f"{payload}.{timestamp}.{flipped}",
        f"{intruder_payload}.{timestamp}.{signature}",
        f"{payload}.{timestamp}",
        "",
        "not-a-ticket",
        "a.b.c",
    ]

    for ticket in tampered:
        with pytest.raises(InvalidTicket):
            signer.verify(ticket)


def test_a_ticket_of_another_key_is_rejected() -> None:
    with pytest.raises(InvalidTicket):
        TicketSigner(KEY).verify(TicketSigner("another-key").issue("admin"))


# --- credentials --------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["s3cret", "pässwörd-ünïcode-🔑", "x" * 200, ""])
def test_a_credential_decrypts_to_what_was_encrypted(password: str) -> None:
    cipher = CredentialCipher(KEY)

    encrypted = cipher.encrypt(password)

    assert cipher.decrypt(encrypted) == password
    assert CredentialCipher(KEY).decrypt(encrypted) == password  # after a restart too


def test_a_ciphertext_reveals_nothing_and_never_repeats() -> None:
    cipher = CredentialCipher(KEY)

    first, second = cipher.encrypt("hunter2-password"), cipher.encrypt("hunter2-password")

    assert "hunter2" not in first
    assert first != second


def test_a_credential_of_one_key_cannot_be_decrypted_with_another() -> None:
    one, other = CredentialCipher("key-one"), CredentialCipher("key-two")

    with pytest.raises(InvalidToken):
        other.decrypt(one.encrypt("s3cret"))
    with pytest.raises(InvalidToken):
        one.decrypt(other.encrypt("s3cret"))


def test_a_tampered_credential_is_rejected() -> None:
    cipher = CredentialCipher(KEY)
    token = cipher.encrypt("s3cret")
    tampered = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]

    with pytest.raises(InvalidToken):
        cipher.decrypt(tampered)


def test_tickets_and_credentials_are_not_interchangeable() -> None:
    """Both derive from the same secret key, each under its own purpose."""
    signer, cipher = TicketSigner(KEY), CredentialCipher(KEY)

    with pytest.raises(InvalidTicket):
        signer.verify(cipher.encrypt("admin"))
    with pytest.raises(InvalidToken):
        cipher.decrypt(signer.issue("admin"))


# --- passwords and tokens -----------------------------------------------------------------


@pytest.mark.parametrize("length", [8, 24, 40])
def test_a_generated_password_has_the_length_asked_and_url_safe_characters(length: int) -> None:
    passwords = {generate_password(length) for _ in range(20)}

    assert len(passwords) == 20
    for password in passwords:
        assert len(password) == length
        assert set(password) <= set(string.ascii_letters + string.digits + "-_")


def test_a_fingerprint_needs_the_secret_key_and_shows_no_plain_digest() -> None:
    token = "an-admin-token-of-at-least-32-bytes"

    named = fingerprint(KEY, token)

    assert named == fingerprint(KEY, token)  # every replica names the token alike
    assert named != fingerprint("another-key", token)
    assert named != fingerprint(KEY, token + "!")
    for digest in ("sha256", "sha512", "sha1", "md5", "blake2b"):
        plain = hashlib.new(digest, token.encode()).hexdigest()
        assert plain[:16] not in named, digest


def test_tokens_match_only_when_equal_and_never_against_an_empty_expectation() -> None:
    assert tokens_match("admin-token", "admin-token")
    assert not tokens_match("admin-token", "admin-tokeN")
    assert not tokens_match("admin-token", "admin-token-longer")
    assert not tokens_match("", "")
    assert not tokens_match("anything", "")
    assert tokens_match("tökén", "tökén")


def test_a_cipher_loads_cryptography_only_when_first_used() -> None:
    """The API makes one as it starts, and reads a credential only when an owner asks for a
    password: loaded at start, cryptography cost it about 7 MB for good."""
    probe = (
        "import sys; from woostore_shared.secrets import CredentialCipher; "
        "cipher = CredentialCipher('k'); made = 'cryptography' in sys.modules; "
        "cipher.decrypt(cipher.encrypt('x')); print(made, 'cryptography' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)

    assert run.stdout.split() == ["False", "True"]
