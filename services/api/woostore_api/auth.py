"""Bearer-token authentication. For now one principal: the admin (tenants come later)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from woostore_api.problems import Problem
from woostore_shared.models import DEFAULT_TENANT_ID
from woostore_shared.secrets import tokens_match

_bearer = HTTPBearer(auto_error=False, description="The admin token (WOOSTORE_ADMIN_TOKEN).")


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant_id: uuid.UUID


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    expected: str = request.app.state.settings.admin_token.get_secret_value()
    if credentials is None or not tokens_match(credentials.credentials, expected):
        raise Problem(401, "Unauthorized", "a valid bearer token is required", kind="unauthorized")
    return Principal(subject="admin", tenant_id=DEFAULT_TENANT_ID)


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
