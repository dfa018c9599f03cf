"""What the API accepts and returns for tenants, API keys and sessions."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from woostore_api.names import printable
from woostore_shared.models import Role

# No control characters: PostgreSQL text cannot hold NUL, and none belongs in a name or key.
NO_CONTROLS = r"^[^\x00-\x1f\x7f]+$"
KEY_NAME_MAX = 100

_TENANT: JsonDict = {
    "id": "7c2d9e41-5a3b-4c6d-8e7f-9a0b1c2d3e4f",
    "name": "acme",
    "store_limit": 5,
    "created_at": "2026-11-26T09:00:00Z",
    "live_stores": 3,
    "store_cap": 5,
}
_KEY: JsonDict = {
    "id": "1f2e3d4c-5b6a-4789-8a9b-0c1d2e3f4a5b",
    "tenant_id": _TENANT["id"],
    "name": "ci deploys",
    "role": "tenant",
    "prefix": "wsk_3f9a1c2b7d4e",
    "created_by": "admin-token",
    "created_at": "2026-11-26T09:01:00Z",
    "revoked_at": None,
}


TENANT_NAME = r"^[a-z0-9][a-z0-9-]*$"
TENANT_NAME_MAX = 100
# What uuid.UUID takes among such names: 32 hex digits, hyphens anywhere. Tenants are named
# where ids are taken too (the CLI's TENANT), so a name that reads as an id would stand
# for another tenant (a user's review).
LIKE_AN_ID = r"^[0-9a-f](-*[0-9a-f]){31}-*$"
# What the schema says of a name; the validator below says it in words when refusing one.
_NAME_SCHEMA: JsonDict = {
    "minLength": 1,
    "maxLength": TENANT_NAME_MAX,
    "pattern": TENANT_NAME,
    "not": {"pattern": LIKE_AN_ID},
}


def _tenant_name(name: str | None) -> str | None:
    """A tenant's name, refused in words rather than as the pattern it breaks."""
    if name is None:  # left as it is (an update's; a null one is refused there)
        return None
    if len(name) > TENANT_NAME_MAX:
        raise ValueError(f"a tenant's name is at most {TENANT_NAME_MAX} characters")
    if not re.fullmatch(TENANT_NAME, name):
        raise ValueError(
            "a tenant's name is lower-case letters (a-z), digits and hyphens, and starts with "
            "a letter or a digit"
        )
    if re.fullmatch(LIKE_AN_ID, name):
        raise ValueError("a tenant's name cannot read as an id (a UUID): it would be taken for one")
    return name


class TenantCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "acme", "store_limit": 5}]}
    )

    name: str = Field(json_schema_extra=_NAME_SCHEMA)
    _name = field_validator("name")(_tenant_name)
    # Strict: true was taken for 1 and "3" for 3, where a name given as 5 was refused.
    store_limit: int | None = Field(
        default=None, ge=0, le=10_000, strict=True,
        description="Live stores allowed; null: platform default.",
    )  # fmt: skip


def _update_schema(schema: JsonDict) -> None:
    """A body gives at least one field, and a name or suspended, when given, is a string or
    a boolean: their default (left as it is) is no value to send."""
    schema["examples"] = [{"store_limit": 20}, {"name": "acme-europe"}, {"suspended": True}]
    schema["minProperties"] = 1
    properties = schema["properties"]
    assert isinstance(properties, dict)
    for never_null in ("name", "suspended"):
        field = properties[never_null]
        assert isinstance(field, dict)
        del field["default"]


class TenantUpdate(BaseModel):
    """What to change: the fields given, at least one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_update_schema)

    # Left out: unchanged. Never null (the check below, and the schema has no null for it):
    # a tenant always has a name.
    name: str | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_NAME_SCHEMA)
    _name = field_validator("name")(_tenant_name)
    store_limit: int | None = Field(
        default=None, ge=0, le=10_000, strict=True, description="Null: platform default."
    )
    suspended: StrictBool = Field(
        default=False,
        description="True suspends it: its keys are refused, its sessions and event streams "
        "end, and its stores keep serving, until false resumes it.",
    )

    @model_validator(mode="after")
    def _changes_something(self) -> TenantUpdate:
        if not self.model_fields_set:
            raise ValueError("give name, store_limit, suspended, or several")
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("a tenant's name cannot be null")
        return self


class TenantOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_TENANT]})

    id: uuid.UUID
    name: str
    store_limit: int | None = None
    created_at: datetime
    live_stores: int = Field(description="Its stores that count against its cap.")
    store_cap: int = Field(description="The cap in force: store_limit, or the platform's default.")
    deleted_at: datetime | None = Field(
        default=None,
        description="When it was deleted: in the answer to its deletion, and in the list "
        "of tenants asked for with include_deleted (otherwise /tenants finds it no more).",
    )
    suspended_at: datetime | None = Field(
        default=None,
        description="Since when it is suspended (its keys refused, its stores serving); "
        "null when it is not.",
    )


class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "ci deploys", "role": "tenant"}]}
    )

    # Checked as a store's name is (names.py): a right-to-left override or a zero-width space
    # in a key's name showed it as another in lists and the audit log.
    name: str = Field(
        min_length=1,
        description="What the key is for.",
        json_schema_extra={"maxLength": KEY_NAME_MAX},
    )
    role: Role = Role.TENANT
    tenant_id: uuid.UUID | None = Field(
        default=None, description="Admins: the key's tenant (default: the caller's own)."
    )

    @field_validator("name")
    @classmethod
    def _normal_and_printable(cls, name: str) -> str:
        return printable(name, KEY_NAME_MAX)


class KeyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_KEY]})

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    role: Role
    prefix: str = Field(description="The key's public start; enough to recognise it.")
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None


class NewKeyOut(KeyOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_KEY, "token": "wsk_3f9a1c2b7d4e_Jx9...(43 characters)"}]
        }
    )

    token: str = Field(description="The key itself. Shown only now: store it safely.")


class KeyList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_KEY]}]})

    items: list[KeyOut]


class SessionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"token": "wsk_3f9a1c2b7d4e_Jx9..."}]}
    )

    token: str = Field(
        min_length=1,
        max_length=200,
        pattern=NO_CONTROLS,
        description="An API key or the admin token.",
    )


class WhoAmI(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "actor": "wsk_3f9a1c2b7d4e",
                    "role": "tenant",
                    "tenant_id": _TENANT["id"],
                    "tenant_name": "acme",
                }
            ]
        }
    )

    actor: str
    role: Role
    tenant_id: uuid.UUID
    tenant_name: str
