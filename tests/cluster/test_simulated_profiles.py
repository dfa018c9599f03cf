"""The simulated cluster renders releases with their values profiles too, as the real
driver installs them: profiles first, the store's own values last."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.cluster.support import HELM, LOCAL_PROFILE, release_for
from woostore_cluster.simulated import SimulatedCluster

NS = "store-acme-1a2b3c"


def stored(cluster: SimulatedCluster, kind: str) -> dict[str, Any]:
    with closing(sqlite3.connect(cluster.state_file)) as db:
        (body,) = db.execute(
            "SELECT body FROM objects WHERE namespace=? AND kind=?", (NS, kind)
        ).fetchone()
    manifest: dict[str, Any] = json.loads(body)
    return manifest


def wordpress_deployment(cluster: SimulatedCluster) -> dict[str, Any]:
    return stored(cluster, "Deployment")


async def test_a_profile_changes_what_is_rendered_and_the_store_values_still_win(
    tmp_path: Path,
) -> None:
    cluster = SimulatedCluster(tmp_path / "sim", helm_binary=str(HELM), time_scale=0)
    await cluster.ensure_namespace(NS, {})
    profile = tmp_path / "profile.yaml"
    profile.write_text(LOCAL_PROFILE.read_text() + "storeName: from the profile\n")

    await cluster.install_release(release_for(NS, values_files=(profile,)), timeout=30)

    spec = wordpress_deployment(cluster)["spec"]
    for container in spec["template"]["spec"]["containers"]:  # WordPress and its cron
        assert container["imagePullPolicy"] == "IfNotPresent", container["name"]  # the profile's
    annotations = stored(cluster, "Ingress")["metadata"]["annotations"]
    assert annotations["woostore.io/store-name"] == "Acme Coffee"  # the store's value wins
