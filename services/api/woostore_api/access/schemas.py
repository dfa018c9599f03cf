"""What the API accepts and returns for tenants, API keys and sessions."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from woostore_shared.models import Role


class TenantCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "acme", "store_limit": 5}]}
    )

    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9-]*$")
    store_limit: int | None = Field(
        default=None, ge=0, le=10_000, description="Live stores allowed; null: platform default."
    )


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_limit: int | None = Field(ge=0, le=10_000, description="Null: platform default.")


class TenantOut(BaseModel):
    id: uuid.UUID
    name: str
    store_limit: int | None
    created_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "ci deploys", "role": "tenant"}]}
    )

    name: str = Field(min_length=1, max_length=100, description="What the key is for.")
    role: Role = Role.TENANT
    tenant_id: uuid.UUID | None = Field(
        default=None, description="Admins: the key's tenant (default: the caller's own)."
    )


class KeyOut(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    role: Role
    prefix: str = Field(description="The key's public start; enough to recognise it.")
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


class NewKeyOut(KeyOut):
    token: str = Field(description="The key itself. Shown only now: store it safely.")


class KeyList(BaseModel):
    items: list[KeyOut]


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200, description="An API key or the admin token.")


class WhoAmI(BaseModel):
    actor: str
    role: Role
    tenant_id: uuid.UUID
    tenant_name: str
