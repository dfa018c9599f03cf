"""woostore tenants/keys/whoami/audit: an admin hands a tenant a key, the tenant uses and
revokes it, all from the terminal."""

from __future__ import annotations

import json
import re

import pytest

from tests.cli.conftest import Platform, woostore
from woostore_shared.models import DEFAULT_TENANT_ID

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_an_admin_gives_a_tenant_a_key_which_works_until_revoked(platform: Platform) -> None:
    tenant = woostore(platform, "tenants", "create", "corner-shops", "--store-limit", "2", "--json")
    assert tenant.code == 0, tenant.err
    tenant_id = tenant.json()["id"]
    listed_tenants = woostore(platform, "tenants", "list")
    [row] = [line for line in listed_tenants.out.splitlines() if "corner-shops" in line]
    assert " 0 of 2 " in row  # its live stores, of its cap
    raised = woostore(platform, "tenants", "update", tenant_id, "--store-limit", "3")
    assert raised.out == "Tenant corner-shops: 0 of 3\n"
    renamed = woostore(platform, "tenants", "update", tenant_id, "--name", "corner-shop")
    assert renamed.out == "Tenant corner-shop: 0 of 3\n"  # its limit as it was
    back = woostore(platform, "tenants", "update", tenant_id, "--name", "corner-shops")
    assert back.code == 0, back.err
    nothing = woostore(platform, "tenants", "update", tenant_id)
    assert (nothing.code, nothing.err) == (2, "Give --name, --store-limit, --suspend or --resume\n")
    with pytest.raises(SystemExit) as usage:  # a usage error, as argparse ends one
        woostore(platform, "tenants", "update", tenant_id, "--store-limit", "some")
    assert usage.value.code == 2

    made = woostore(platform, "keys", "create", "laptop", "--tenant", tenant_id)
    assert made.code == 0, made.err
    token = made.out.strip()
    assert token.startswith("wsk_")
    assert "only time" in made.err  # the token is shown once, and the user is told so

    # By its name too, a tenant's key its own.
    own = woostore(platform, "tenants", "show", "corner-shops", token=token)
    assert own.out == f"Tenant corner-shops ({tenant_id}): 0 of 3\n"
    me = woostore(platform, "whoami", token=token)
    assert me.code == 0, me.err
    assert me.out == f"{token[:16]} (tenant) in tenant corner-shops ({tenant_id})\n"
    admin = woostore(platform, "whoami")  # the admin token: an admin of tenant default
    assert admin.out.startswith("admin-token (admin, of every tenant) in tenant default ")
    created = woostore(platform, "create", "Tenant Shop", "--json", token=token)
    assert created.code == 0, created.err
    store_id = created.json()["id"]
    # The tenant sees its store; the key list shows the prefix, never the token.
    assert store_id in woostore(platform, "list", token=token).out
    # An admin makes one for the tenant: it is the tenant's too.
    theirs = woostore(platform, "create", "Made For Them", "--tenant", tenant_id, "--json")
    assert theirs.code == 0, theirs.err
    assert theirs.json()["id"] in woostore(platform, "list", token=token).out
    assert "TENANT" not in woostore(platform, "list", token=token).out  # one tenant's: no need
    assert woostore(platform, "create", "Made For Them", "--json").code == 0  # the admin's own
    every = woostore(platform, "list", "--name", "made for them").out.splitlines()
    assert every[0].split()[:3] == ["ID", "NAME", "TENANT"]
    assert any(theirs.json()["id"] in row and " corner-shops " in row for row in every)
    assert any(" default " in row for row in every[1:])
    keys = woostore(platform, "keys", "list", token=token)
    assert token[:16] in keys.out
    assert token not in keys.out
    assert "TENANT" not in keys.out  # one tenant's keys
    # A limit below what it has: its stores are kept, and the admin is told what that means.
    lowered = woostore(platform, "tenants", "update", tenant_id, "--store-limit", "1")
    assert lowered.out == "Tenant corner-shops: 2 of 1\n"
    assert lowered.err == "It keeps the 2 stores it has, and can make no more until 2 are deleted\n"
    none = woostore(platform, "tenants", "update", tenant_id, "--store-limit", "0", "--json")
    assert none.json()["store_cap"] == 0
    assert none.err == "It keeps the 2 stores it has, and can make no more while its limit is 0\n"
    assert woostore(platform, "tenants", "update", tenant_id, "--name", "corner-shops").err == ""
    assert woostore(platform, "tenants", "update", tenant_id, "--store-limit", "3").err == ""
    # Suspended: its key is refused and its stores kept, until it is resumed.
    paused = woostore(platform, "tenants", "update", "corner-shops", "--suspend")  # by name
    assert paused.code == 0, paused.err
    first, second = paused.out.splitlines()
    assert first.startswith("Tenant corner-shops: 2 of 3, suspended since 20")
    assert second.startswith("Its keys are refused until it is resumed")
    assert "suspended since" in woostore(platform, "tenants", "show", tenant_id).out
    assert "this key's tenant is suspended" in woostore(platform, "list", token=token).err
    assert store_id in woostore(platform, "list", "--tenant", "corner-shops").out  # kept
    listed = woostore(platform, "list", "--name", "made for them").out  # two tenants' stores
    assert " corner-shops (suspended) " in listed
    resumed = woostore(platform, "tenants", "update", tenant_id, "--resume")
    assert resumed.out == "Tenant corner-shops: 2 of 3\nIts keys are accepted\n"
    assert store_id in woostore(platform, "list", token=token).out
    updates = woostore(platform, "audit", "--tenant", tenant_id).out.splitlines()
    assert updates[0].split()[:6] == ["TIME", "ACTOR", "ACTION", "TARGET", "DETAILS", "FROM"]
    resumed_line, suspended_line = [line for line in updates if "tenant.update" in line][:2]
    assert " suspended=false " in resumed_line  # newest first: told apart by what changed
    assert " suspended=true " in suspended_line
    with pytest.raises(SystemExit):  # one or the other
        woostore(platform, "tenants", "update", tenant_id, "--suspend", "--resume")
    history = woostore(platform, "audit", "--target", f"store/{store_id}", token=token)
    assert "store.create" in history.out
    assert token[:16] in history.out
    # An admin narrows its lists to the tenant; the audit log names the CLI as the agent.
    theirs_listed = woostore(platform, "list", "--tenant", tenant_id, "--json").json()["items"]
    assert {s["tenant_id"] for s in theirs_listed} == {tenant_id}
    entries = woostore(platform, "audit", "--tenant", tenant_id, "--json").json()["items"]
    assert {e["tenant_id"] for e in entries} == {tenant_id}
    assert entries[0]["user_agent"].startswith("woostore-cli/")

    key_id = woostore(platform, "keys", "list", "--json", token=token).json()["items"][0]["id"]
    unknown = woostore(platform, "keys", "revoke", "wsk_000000000000_NotARealSecretAtAll")
    assert (unknown.code, unknown.out) == (1, "")
    assert "Not found: no key has the id or prefix wsk_000000000000 " in unknown.err
    assert "NotARealSecret" not in unknown.err  # a whole key is never repeated
    # By the prefix the lists show (or the whole key, or its id); a second time says it was
    # done before.
    revoked = woostore(platform, "keys", "revoke", token)
    assert revoked.code == 0, revoked.err
    assert revoked.err == (
        f"Give the prefix, {token[:16]}: a whole key on a command line is seen by others\n"
    )
    assert revoked.out == f"Revoked {token[:16]} (laptop)\n"
    again = woostore(platform, "keys", "revoke", key_id.upper())  # as any UUID is written
    assert again.code == 0, again.err
    assert again.out.startswith(f"{token[:16]} (laptop) was revoked already, at 20")
    refused = woostore(platform, "list", token=token)
    assert refused.code == 1
    assert refused.err.startswith("Unauthorized:")

    # The tenant leaves: not while it has stores; once they are deleted, for good.
    still = woostore(platform, "tenants", "delete", tenant_id)
    assert still.code == 1
    assert "still has 2 stores" in still.err
    for store in (store_id, theirs.json()["id"]):
        assert woostore(platform, "delete", store, "--wait").code == 0
    gone = woostore(platform, "tenants", "delete", tenant_id)
    assert gone.code == 0, gone.err
    assert gone.out.startswith("Tenant corner-shops deleted: its keys are revoked")
    assert "corner-shops" not in woostore(platform, "tenants", "list").out
    # Its history stays readable: listed among the deleted, its revoked key named by it.
    deleted = woostore(platform, "tenants", "list", "--deleted").out.splitlines()
    assert deleted[0].split()[-1] == "DELETED"
    [row] = [line for line in deleted if " corner-shops " in line]
    assert re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", row.rstrip())  # when it left
    assert woostore(platform, "keys", "create", "till").code == 0  # one of tenant default's
    every_key = woostore(platform, "keys", "list").out.splitlines()
    assert every_key[0].split()[:4] == ["ID", "PREFIX", "NAME", "TENANT"]
    assert any(token[:16] in line and " corner-shops (deleted) " in line for line in every_key)
    # A tenant that never was is not one with nothing.
    nobody = "00000000-0000-4000-8000-000000000000"
    for command in (["list", "--tenant", nobody], ["audit", "--tenant", nobody]):
        unknown_tenant = woostore(platform, *command)
        assert unknown_tenant.code == 1
        assert f"tenant {nobody} does not exist" in unknown_tenant.err


def test_a_tenant_key_cannot_make_an_admin_key(platform: Platform) -> None:
    made = woostore(platform, "tenants", "create", "humble", "--store-limit", "4")
    assert made.out.startswith("Tenant humble (")
    assert made.out.endswith("): 0 of 4\n")  # its id, and its live stores of its cap
    tenant_id = made.out.split("(")[1].split(")")[0]
    token = woostore(platform, "keys", "create", "k", "--tenant", "humble").out.strip()
    [key] = woostore(platform, "keys", "list", "--tenant", "humble", "--json").json()["items"]
    assert key["tenant_id"] == tenant_id  # the name stood for its id
    unknown = woostore(platform, "tenants", "show", "nobody-by-that-name")
    assert (unknown.code, unknown.err) == (
        1,
        "Not found: no tenant is named 'nobody-by-that-name' (see woostore tenants list)\n",
    )
    # With --json, as a problem, as the API's refusals are (a user's review: plain words).
    told = woostore(platform, "tenants", "show", "nobody-by-that-name", "--json")
    assert (told.code, json.loads(told.err)) == (1, {
        "title": "Not found", "status": 404,
        "detail": "no tenant is named 'nobody-by-that-name' (see woostore tenants list)",
    })  # fmt: skip
    assert woostore(platform, "tenants", "show", "default").out.startswith("Tenant default (")
    # A tenant's key naming another tenant is told whom it sees, not to list the tenants; by
    # its name or by its id, in the same words (a user's review).
    by_name = woostore(platform, "list", "--tenant", "default", token=token)
    assert (by_name.code, by_name.err) == (
        1,
        "Forbidden: a tenant key reads only its own tenant's data (humble)\n",
    )
    by_id = woostore(platform, "list", "--tenant", str(DEFAULT_TENANT_ID), token=token)
    assert (by_id.code, by_id.err) == (
        1,
        "Forbidden: a tenant key reads only its own tenant's data\n",
    )

    result = woostore(platform, "keys", "create", "root", "--role", "admin", token=token)

    assert result.code == 1
    assert result.err.startswith("Forbidden: ")
    assert result.out == ""


def test_an_admin_making_a_key_or_a_store_for_a_suspended_tenant_is_told_so(
    platform: Platform,
) -> None:
    """Both are made, and work once the tenant is resumed; until then its keys are refused,
    which the admin learnt only from the tenant (a user's review)."""
    assert woostore(platform, "tenants", "create", "on-hold", "--store-limit", "1").code == 0
    active = woostore(platform, "keys", "create", "first", "--tenant", "on-hold")
    assert active.code == 0, active.err
    assert "suspended" not in active.err
    assert woostore(platform, "tenants", "update", "on-hold", "--suspend").code == 0

    key = woostore(platform, "keys", "create", "second", "--tenant", "on-hold")
    store = woostore(platform, "create", "Shop On Hold", "--tenant", "on-hold", "--json")

    assert key.code == store.code == 0, key.err + store.err
    resume = "until an admin resumes it (woostore tenants update on-hold --resume).\n"
    assert key.err.endswith(f"\nTenant on-hold is suspended: this key is refused {resume}")
    assert store.err == f"Tenant on-hold is suspended: its keys cannot reach this store {resume}"
    assert store.json()["name"] == "Shop On Hold"  # --json's output is the store alone
    refused = woostore(platform, "list", token=key.out.strip())
    assert "this key's tenant is suspended" in refused.err
