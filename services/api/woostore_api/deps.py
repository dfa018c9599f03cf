"""What a route may ask for, typed: the settings and the objects the app builds at start
(``create_app``'s lifespan). Routes declare these instead of reading ``request.app.state``.

Each is ``async def`` though it awaits nothing: FastAPI runs a plain ``def`` dependency in
its thread pool, a thread hop per dependency per request for a mere attribute read."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from woostore_api.remembered import Remembered
from woostore_api.stores.schemas import StepTimes
from woostore_shared.access import Authenticator
from woostore_shared.db import Database
from woostore_shared.outbox import Outbox
from woostore_shared.secrets import CredentialCipher, TicketSigner
from woostore_shared.settings import Settings


def settings_of(connection: HTTPConnection) -> Settings:
    """The settings, where a dependency cannot be declared (a security scheme's extractor)."""
    return cast(Settings, connection.app.state.settings)


async def _settings(request: Request) -> Settings:
    return settings_of(request)


async def _database(request: Request) -> Database:
    return cast(Database, request.app.state.db)


async def _outbox(request: Request) -> Outbox:
    return cast(Outbox, request.app.state.outbox)


async def _cipher(request: Request) -> CredentialCipher:
    return cast(CredentialCipher, request.app.state.cipher)


async def _tickets(request: Request) -> TicketSigner:
    return cast(TicketSigner, request.app.state.tickets)


async def _sessions(request: Request) -> TicketSigner:
    return cast(TicketSigner, request.app.state.sessions)


async def _authenticator(request: Request) -> Authenticator:
    return cast(Authenticator, request.app.state.authenticator)


async def _step_times(request: Request) -> Remembered[StepTimes]:
    return cast(Remembered[StepTimes], request.app.state.step_times)


SettingsDep = Annotated[Settings, Depends(_settings)]
DatabaseDep = Annotated[Database, Depends(_database)]
OutboxDep = Annotated[Outbox, Depends(_outbox)]
CipherDep = Annotated[CredentialCipher, Depends(_cipher)]
TicketsDep = Annotated[TicketSigner, Depends(_tickets)]  # event-stream tickets
SessionsDep = Annotated[TicketSigner, Depends(_sessions)]  # the dashboard's session cookies
AuthenticatorDep = Annotated[Authenticator, Depends(_authenticator)]
StepTimesDep = Annotated[Remembered[StepTimes], Depends(_step_times)]
