"""A simulated store's content, as backups and restores reach it: its database (the WordPress
state and its order numbers) dumped and loaded, its uploads archived and replaced by the
real tar, and all of it gone with the namespace."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.support import HELM, running_store
from woostore_cluster import PermanentClusterError
from woostore_cluster.simulated import SimulatedCluster

NS = "store-content"


@pytest.fixture
async def cluster(tmp_path: Path) -> SimulatedCluster:
    """A store's namespace with the chart installed and its pods running."""
    cluster = SimulatedCluster(tmp_path / "sim", helm_binary=str(HELM), time_scale=0)
    await running_store(cluster, NS)
    return cluster


async def collected(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def replayed(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def wp(cluster: SimulatedCluster, *args: str, stdin: str | None = None) -> str:
    result = await cluster.wp(NS, list(args), stdin=stdin)
    assert result.ok, result.stdout
    return result.stdout


async def test_a_dump_loaded_back_brings_the_store_back_as_it_was(
    cluster: SimulatedCluster,
) -> None:
    await wp(cluster, "core", "install", "--url=http://shop.example.test", "--title=Shop",
             "--admin_user=admin", "--admin_email=a@example.test", "--prompt=admin_password",
             stdin="pw\n")  # fmt: skip
    await wp(cluster, "plugin", "activate", "woocommerce")
    await wp(cluster, "wc", "product", "create", "--name=Mug", "--regular_price=9.00")
    dump = await collected(cluster.dump_database(NS))

    await wp(cluster, "option", "update", "blogname", "Changed")
    await wp(cluster, "wc", "product", "create", "--name=Kettle", "--regular_price=30.00")
    await cluster.load_database(NS, replayed(dump))

    state = cluster.wordpress_state(NS)
    assert [p["name"] for p in state["products"]] == ["Mug"]
    assert state["title"] == "Shop"
    assert state["pods_ready"]  # the pods' own state is not the database's
    assert await wp(cluster, "core", "version") == "7.1.2"
    assert await wp(cluster, "plugin", "get", "woocommerce", "--field=version") == "11.2.0"


async def test_a_dump_that_is_not_the_simulations_is_refused_and_changes_nothing(
    cluster: SimulatedCluster,
) -> None:
    before = cluster.wordpress_state(NS)
    with pytest.raises(PermanentClusterError, match="not one the simulated cluster made"):
        await cluster.load_database(NS, replayed([b"-- MariaDB dump 10.19\nCREATE TABLE"]))
    assert cluster.wordpress_state(NS) == before


async def test_uploads_archived_and_replaced_come_back_byte_for_byte(
    cluster: SimulatedCluster,
) -> None:
    uploads = cluster.uploads(NS)
    (uploads / "2026" / "12").mkdir(parents=True)
    photo = bytes(range(256)) * 8192  # 2 MiB, several chunks
    (uploads / "2026" / "12" / "mug.jpg").write_bytes(photo)
    archive = await collected(cluster.archive_uploads(NS))
    assert len(archive) > 1

    (uploads / "2026" / "12" / "mug.jpg").write_bytes(b"overwritten")
    (uploads / "added-later.png").write_bytes(b"not in the backup")
    await cluster.replace_uploads(NS, replayed(archive))

    kept = sorted(str(p.relative_to(uploads)) for p in uploads.rglob("*"))
    assert kept == ["2026", "2026/12", "2026/12/mug.jpg"]
    restored = (uploads / "2026" / "12" / "mug.jpg").read_bytes()
    assert hashlib.sha256(restored).digest() == hashlib.sha256(photo).digest()


async def test_a_broken_archive_fails_the_replacement(cluster: SimulatedCluster) -> None:
    with pytest.raises(PermanentClusterError, match="tar failed"):
        await cluster.replace_uploads(NS, replayed([b"this is no tar archive" * 100]))


async def test_deleting_the_namespace_removes_its_uploads(cluster: SimulatedCluster) -> None:
    (cluster.uploads(NS) / "mug.jpg").write_bytes(b"jpeg")
    await cluster.delete_namespace(NS, timeout=60)
    assert not (cluster.uploads_root / NS).exists()
    with pytest.raises(PermanentClusterError, match="not found"):
        await collected(cluster.archive_uploads(NS))


async def test_customers_are_users_with_an_email_of_their_own(cluster: SimulatedCluster) -> None:
    await wp(cluster, "core", "install", "--url=http://shop.example.test", "--title=Shop",
             "--admin_user=admin", "--admin_email=a@example.test", "--prompt=admin_password",
             stdin="pw\n")  # fmt: skip
    await wp(cluster, "plugin", "activate", "woocommerce")
    assert await wp(cluster, "wc", "customer", "create", "--email=asha@example.test",
                    "--first_name=Asha") == "Success: Created customer 2."  # fmt: skip
    for email, error in (
        ("asha@example.test", "Error: An account is already registered with your email address."),
        ("not-an-email", "Error: Invalid email address."),
    ):
        refused = await cluster.wp(NS, ["wc", "customer", "create", f"--email={email}"])
        assert (refused.ok, refused.stdout) == (False, error)
    order = cluster.place_order(NS, customer_id=2)
    listed = json.loads(await wp(cluster, "wc", "customer", "list", "--format=json"))
    assert listed == [
        {"id": 2, "email": "asha@example.test", "first_name": "Asha", "last_name": ""}
    ]
    assert cluster.wordpress_state(NS)["orders"][-1] == {
        "id": order, "payment_method": "cod", "status": "processing", "customer_id": 2,
    }  # fmt: skip
    with pytest.raises(ValueError, match="no customer 9"):
        cluster.place_order(NS, customer_id=9)
    assert not (await cluster.wp(NS, ["wc", "customer", "delete", "9", "--force=true"])).ok
    unforced = await cluster.wp(NS, ["wc", "customer", "delete", "2"])
    assert (unforced.ok, unforced.stdout) == (False, "Error: Customers do not support trashing.")
    await wp(cluster, "wc", "customer", "delete", "2", "--force=true")
    assert await wp(cluster, "wc", "customer", "list") == "0"
    # WordPress never gives an id again, even once its user is gone.
    assert await wp(cluster, "wc", "customer", "create", "--email=ravi@example.test") == (
        "Success: Created customer 3."
    )
