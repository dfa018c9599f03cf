"""woostore create/list/show/credentials/delete against the real platform."""

from __future__ import annotations

import json
import re
import socket

import pytest

from tests.cli.conftest import (
    PROVISIONING,
    TYPE,
    Platform,
    api_list,
    api_store,
    create_ready,
    run,
    story,
    woostore,
)
from woostore_cli import client
from woostore_cli.main import STATUSES, main
from woostore_provisioner.recipe import DELETE, PROVISION
from woostore_shared.models import StoreStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_create_wait_reaches_ready_and_prints_the_urls(platform: Platform) -> None:
    result = woostore(platform, "create", "Corner Shop", "--wait")

    assert result.code == 0, result.err
    [listed] = [s for s in api_list(platform) if s["name"] == "Corner Shop"]
    store = api_store(platform, listed["id"])
    assert store["status"] == "ready"
    assert re.search(r"^Corner Shop \(simulated\) is ready in \d+\.\d s\.$", result.out, re.M)
    assert f"storefront  {store['storefront_url']}\n" in result.out
    assert f"admin       {store['admin_url']}\n" in result.out
    assert f"woostore credentials {store['id']}" in result.out
    # Off a terminal (here, as in a CI job's log), each step is a line of its own.
    steps = re.findall(r"^Step (\d+) of (\d+) — .+ \(\d+%\)$", result.err, re.M)
    shown = [int(n) for n in dict.fromkeys(n for n, _ in steps)]  # a step's cause: a line more
    assert shown == list(range(1, len(shown) + 1)), result.err
    assert {int(total) for _, total in steps} == {len(shown)}  # the last step among them
    assert result.err.endswith("Ready (100%)\n"), result.err


def test_json_outputs_parse(platform: Platform) -> None:
    created = woostore(platform, "create", "Json Shop", "--wait", "--json")
    assert created.code == 0, created.err
    lines = created.json_lines()  # one JSON document per line, one line per event
    store_id = lines[0]["event"]["subject"]
    assert {line["event"]["subject"] for line in lines} == {store_id}
    assert story([line["event"] for line in lines]) == PROVISIONING
    sequences = [line["sequence"] for line in lines]
    assert sequences == sorted(set(sequences))

    listed = woostore(platform, "list", "--json")
    assert store_id in {store["id"] for store in listed.json()["items"]}
    shown = woostore(platform, "--json", "show", store_id)  # --json before the command too
    assert shown.json()["storefront_url"] == lines[-1]["event"]["data"]["storefront_url"]
    assert story(shown.json()["events"]) == PROVISIONING
    login = woostore(platform, "credentials", store_id, "--json").json()
    assert login["username"] == "admin"
    assert login["password"]

    deleted = woostore(platform, "delete", store_id, "--wait", "--json")
    assert deleted.code == 0, deleted.err
    kinds = [line["event"]["type"].removeprefix(TYPE) for line in deleted.json_lines()]
    assert kinds == ["delete_requested", *["progress"] * 2 * len(DELETE.steps), "deleted"]
    assert woostore(platform, "show", store_id, "--json").json()["status"] == "deleted"


def test_list_show_and_credentials_for_people(platform: Platform) -> None:
    store_id = create_ready(platform, "Baker [bold]Street")
    store = api_store(platform, store_id)

    listed = woostore(platform, "list")
    assert listed.code == 0, listed.err
    [row] = [line for line in listed.out.splitlines() if line.startswith(store_id)]
    # the name as typed (not rich markup), the simulated tag, the storefront, unwrapped
    assert re.split(r"\s{2,}", row)[1:4] == [
        "Baker [bold]Street",
        "ready (simulated)",
        store["storefront_url"],
    ]
    assert listed.out.splitlines()[0].split() == ["ID", "NAME", "STATUS", "DETAIL", "CREATED"]
    assert store_id in woostore(platform, "list", "--status", "ready").out
    assert store_id not in woostore(platform, "list", "--status", "failed").out
    assert store_id in woostore(platform, "list", "--name", "BAKER [bold]").out
    assert store_id not in woostore(platform, "list", "--name", "Baker Street").out

    shown = woostore(platform, "show", store_id)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0] == "Baker [bold]Street (simulated)"
    assert f"  storefront  {store['storefront_url']}" in lines
    assert (
        "  actions     delete, upgrade, settings, backup, credentials" in lines
    )  # no rollback at revision 1, nor a restore before a backup
    history = lines[lines.index("Events") + 1 :]
    assert [line.split()[2] for line in history] == [
        kind.split()[0] for kind in PROVISIONING
    ]  # time (2 words), then the kind, in order
    assert history[0].endswith('queued "Baker [bold]Street"')
    assert history[-1].endswith(f"ready {store['storefront_url']}")

    login = woostore(platform, "credentials", store_id)
    assert login.code == 0, login.err
    password = woostore(platform, "credentials", store_id, "--json").json()["password"]
    assert login.out == f"username  admin\npassword  {password}\n"


def test_list_pages_through_up_to_its_limit_and_says_when_more_are_left(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list longer than one of the API's pages (500 stores, here 2) is read page by page,
    up to --limit; cut short, it says so, where people see it and a pipe does not."""
    monkeypatch.setattr(client, "PAGE_MAX", 2)
    made = [woostore(platform, "create", f"Paged {n}", "--json").json()["id"] for n in range(3)]
    newest_first = made[::-1]

    cut = woostore(platform, "list", "--name", "Paged", "--limit", "2")
    whole = woostore(platform, "list", "--name", "Paged", "--limit", "3", "--json")
    roomy = woostore(platform, "list", "--name", "Paged", "--limit", "501", "--json")

    assert cut.code == 0, cut.err
    assert [line.split()[0] for line in cut.out.splitlines()[1:]] == newest_first[:2]
    assert cut.err == "The first 2 stores: --limit 4 shows more.\n"
    assert [s["id"] for s in whole.json()["items"]] == newest_first  # over two pages
    assert whole.json()["next_cursor"] is None
    assert [s["id"] for s in roomy.json()["items"]] == newest_first
    assert roomy.json()["next_cursor"] is None
    assert roomy.err == ""
    with pytest.raises(SystemExit) as refused:  # a usage error, as argparse ends one
        woostore(platform, "list", "--limit", "0")
    assert refused.value.code == 2


def test_list_takes_every_status_a_tenants_store_can_be_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenants_see = {status.value for status in StoreStatus} - {"pooled"}  # pooled: nobody's
    assert set(STATUSES) == tenants_see
    # Another is a usage error, before any request (it was sent, and refused by the API).
    with pytest.raises(SystemExit) as refused:
        main(["list", "--status", "bogus", "--url", "http://127.0.0.1:9", "--token=t"])
    assert refused.value.code == 2
    assert "argument --status: invalid choice: 'bogus'" in capsys.readouterr().err


def test_delete_wait_shows_the_deletion_steps(platform: Platform) -> None:
    store_id = create_ready(platform, "Closing Down")

    result = woostore(platform, "delete", store_id, "--wait")

    assert result.code == 0, result.err
    assert result.out == "Closing Down (simulated) is deleted.\n"
    assert "Deleted" in result.err
    assert "100%" in result.err
    assert api_store(platform, store_id)["status"] == "deleted"
    # Kept for its history, listed only when asked for.
    assert store_id not in woostore(platform, "list").out
    assert store_id in woostore(platform, "list", "--all").out
    assert store_id in woostore(platform, "list", "--status", "deleted").out
    assert store_id in woostore(platform, "list", "--status", "ready", "--status", "deleted").out
    again = woostore(platform, "delete", store_id, "--wait")  # its answer lost, say
    assert (again.code, again.out) == (0, "Closing Down (simulated) is deleted.\n"), again.err


def test_a_failed_store_prints_the_reason_and_exits_1(platform: Platform) -> None:
    platform.stop("provisioner")
    platform.start("provisioner", WOOSTORE_SIM_FAULTS=json.dumps({"wait_for_rollout": "error"}))
    try:
        result = woostore(platform, "create", "Doomed", "--wait")
    finally:
        platform.stop("provisioner")
        platform.start("provisioner")

    assert result.code == 1
    assert result.out == ""
    reason = "wait_for_rollout failed: simulated fault (ImagePullBackOff)"
    rollout = f"step 4 of {len(PROVISION.steps)} — {PROVISION.steps[3].title}"  # as shown
    assert f"Doomed failed at {rollout}: {reason}" in result.err
    [store] = [s for s in api_list(platform) if s["name"] == "Doomed"]
    assert f"  status      failed — {reason}" in woostore(platform, "show", store["id"]).out


def test_create_without_wait_returns_at_once(platform: Platform) -> None:
    result = woostore(platform, "create", "Quick", "--json")

    assert result.code == 0, result.err
    store = result.json()
    assert store["status"] == "queued"
    assert store["simulated"] is True
    # Deleting it cancels it; deleting it again changes nothing, and says how it is.
    cancelled = woostore(platform, "delete", store["id"], "--wait")
    assert cancelled.code == 0, cancelled.err
    assert cancelled.out == "Quick (simulated) is deleted.\n"
    again = woostore(platform, "delete", store["id"])
    assert (again.code, again.out) == (0, "Quick (simulated) is deleted.\n"), again.err


def test_wait_follows_a_store_made_without_wait_until_it_is_ready(platform: Platform) -> None:
    """A store created without --wait (a script's, a colleague's) can be followed alone:
    `events --follow` shows every store's events."""
    store = woostore(platform, "create", "Later", "--json").json()

    waited = woostore(platform, "wait", store["id"])

    assert waited.code == 0, waited.err
    # Followed to its end, or ready before `wait` read it: either way, said once.
    assert re.fullmatch(
        r"Later \(simulated\) is ready( in \d+\.\d s( from the warm pool)?| — http\S+)\.\n(.|\n)*",
        waited.out,
    ), waited.out
    assert api_store(platform, store["id"])["status"] == "ready"
    again = woostore(platform, "wait", store["id"])  # doing nothing now: how it is
    assert again.code == 0, again.err
    assert (
        again.out
        == f"Later (simulated) is ready — {api_store(platform, store['id'])['storefront_url']}.\n"
    )


def test_create_takes_the_stores_settings_as_options(platform: Platform) -> None:
    created = woostore(
        platform, "create", "Laden", "--currency", "EUR", "--country", "DE",
        "--language", "de_DE", "--no-sample-products", "--json",
    )  # fmt: skip
    refused = woostore(platform, "create", "Laden", "--currency", "EURO")

    assert created.code == 0, created.err
    settings = created.json()["settings"]
    assert (settings["currency"], settings["country"], settings["state"]) == ("EUR", "DE", None)
    assert (settings["language"], settings["sample_products"]) == ("de_DE", False)
    shown = woostore(platform, "show", created.json()["id"])
    assert "settings    EUR, DE, de_DE, no sample products" in shown.out
    assert refused.code == 1
    assert refused.err.startswith("Invalid request: body.settings.currency: ")


def test_a_refused_name_prints_the_problem(platform: Platform) -> None:
    result = woostore(platform, "create", "   ")

    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith("Invalid request: body.name: ")


def test_a_wrong_token_prints_the_problem_title_and_exits_1(platform: Platform) -> None:
    for args in (["list"], ["create", "Nope", "--wait"], ["events"]):
        result = woostore(platform, *args, token="wrong-token")
        assert result.code == 1, args
        assert result.err == (
            "Unauthorized: the bearer token is not a valid API key or was revoked\n"
        ), args
        assert result.out == ""
    assert "Nope" not in {store["name"] for store in api_list(platform)}


def test_url_and_token_come_from_the_environment(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WOOSTORE_URL", platform.api_url)
    monkeypatch.setenv("WOOSTORE_TOKEN", platform.token)
    assert run("list").code == 0

    monkeypatch.setenv("WOOSTORE_TOKEN", "wrong-token")
    assert run("list").code == 1
    assert run("list", f"--token={platform.token}").code == 0  # the option wins

    monkeypatch.delenv("WOOSTORE_TOKEN")
    result = run("list")
    assert result.code == 1
    assert "(set WOOSTORE_TOKEN or pass --token)" in result.err


def test_an_unreachable_url_exits_2_with_one_line() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    for args in (["list"], ["create", "Shop", "--wait"], ["events", "--follow"]):
        result = run(*args, "--url", url, "--token", "any")
        assert result.code == 2, args
        assert result.err.startswith(f"woostore: cannot reach {url} ("), result.err
        assert result.err.count("\n") == 1, result.err
        assert result.out == ""
    # A create the API may have received names its key, so running it again makes no second.
    lost = run("create", "Shop", "--idempotency-key", "order-7", "--url", url, "--token", "any")
    assert lost.code == 2
    assert lost.err.rstrip("\n").endswith(
        "it may have made the store: run it again with --idempotency-key order-7 to be"
        " answered with that one rather than make another"
    ), lost.err


def test_create_with_the_same_idempotency_key_answers_with_the_same_store(
    platform: Platform,
) -> None:
    first = woostore(platform, "create", "Once", "--idempotency-key", "cli-once", "--json")
    again = woostore(platform, "create", "Once", "--idempotency-key", "cli-once", "--json")
    other = woostore(platform, "create", "Once", "--json")  # a key of its own

    assert first.code == again.code == other.code == 0, first.err + again.err + other.err
    assert again.json()["id"] == first.json()["id"]
    assert other.json()["id"] != first.json()["id"]
    # Waited for again once it is ready: it says so at once (it waited for a `ready` event
    # sent long before, for ever).
    assert woostore(platform, "wait", first.json()["id"]).code == 0
    waited = woostore(platform, "create", "Once", "--idempotency-key", "cli-once", "--wait")
    assert waited.code == 0, waited.err
    url = api_store(platform, first.json()["id"])["storefront_url"]
    made = "Once (simulated), made before with this idempotency key, is"
    assert waited.out == f"{made} ready — {url}: {first.json()['id']}\n"
    # Deleted since: not "queued", and not what was asked for (a user's review).
    assert woostore(platform, "delete", first.json()["id"], "--wait").code == 0
    for wait in ([], ["--wait"]):
        gone = woostore(platform, "create", "Once", "--idempotency-key", "cli-once", *wait)
        assert (gone.code, gone.out) == (1, f"{made} deleted: {first.json()['id']}\n"), wait
