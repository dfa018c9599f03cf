"""The recipe on a REAL cluster through the Kubernetes driver: provision a store, place
and delete a cash-on-delivery order, see the pod's cron container run WordPress's scheduled
work, delete the store, and see its namespace gone.

Runs only when ``WOOSTORE_E2E_KUBECONFIG`` names the kubeconfig of a disposable cluster
(see docs/kubernetes.md, "The real-cluster test"); skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import pytest

from tests.cluster.support import QUEUE_RUNNER, queue_runner_is_ahead
from tests.support import DEFAULT_SETTINGS
from woostore_cluster import TransientClusterError, connect_cluster
from woostore_provisioner.recipe import DELETE, PROVISION, Step, StoreJob, TimeLimits
from woostore_shared.secrets import CredentialCipher
from woostore_shared.settings import Settings

KUBECONFIG = os.environ.get("WOOSTORE_E2E_KUBECONFIG", "")
if not KUBECONFIG:
    pytest.skip(
        "WOOSTORE_E2E_KUBECONFIG is not set: the real-cluster test needs the kubeconfig of a "
        "disposable cluster with an ingress controller and the store image (make cluster-up; "
        "docs/kubernetes.md)",
        allow_module_level=True,
    )

REPO = Path(__file__).resolve().parents[2]
# Where stores are reached: <slug>.<base domain> must resolve to the ingress controller.
BASE_DOMAIN = os.environ.get("WOOSTORE_E2E_BASE_DOMAIN", "127.0.0.1.nip.io")
VALUES_FILES = tuple(
    Path(p)
    for p in os.environ.get(
        "WOOSTORE_E2E_VALUES_FILES", str(REPO / "helm" / "store" / "values-local.yaml")
    ).split(",")
    if p
)
ATTEMPTS = 5  # as the provisioner: a transient error is retried, after the delay it asks for
CRON_WITHIN = 300.0  # seconds: a few rounds of the cron container (60 s each)


async def run(step: Step, job: StoreJob) -> None:
    """One step as the provisioner runs it: within its timeout, transient errors retried."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with asyncio.timeout(step.deadline(job.limits)):
                await step.run(job)
            return
        except TransientClusterError as error:
            if attempt == ATTEMPTS:
                raise
            print(
                f"{step.name}: transient ({error}); again in {error.delay:g}s"
            )  # progress of a long test
            await asyncio.sleep(error.delay)


@pytest.mark.timeout(3600)
async def test_a_store_is_provisioned_verified_and_deleted_on_a_real_cluster() -> None:
    settings = Settings(
        kubeconfig=Path(KUBECONFIG),
        helm_binary=str(REPO / ".tools" / "bin" / "helm"),
        base_domain=BASE_DOMAIN,
    )
    cluster = connect_cluster(settings)
    assert cluster.simulated is False
    slug = f"e2e-{uuid.uuid4().hex[:6]}"
    host = f"{slug}.{BASE_DOMAIN}"
    job = StoreJob(
        store_id=str(uuid.uuid4()),
        name="WooStore e2e",
        slug=slug,
        namespace=f"store-{slug}",
        host=host,
        storefront_url=f"http://{host}",
        cluster=cluster,
        chart=REPO / "helm" / "store",
        cipher=CredentialCipher("e2e-secret-key"),
        limits=TimeLimits(rollout=settings.rollout_timeout_seconds),
        settings=DEFAULT_SETTINGS,
        values_files=VALUES_FILES,
    )
    try:
        for step in PROVISION.steps:  # its last step places (and deletes) a COD order
            await run(step, job)
        check = await cluster.check_storefront(job.namespace, job.storefront_url)
        assert check.status_code == 200
        assert check.products >= 3
        assert check.order_placed, check.detail
        give_up = time.monotonic() + CRON_WITHIN
        while not await queue_runner_is_ahead(cluster, job.namespace):
            assert time.monotonic() < give_up, f"{QUEUE_RUNNER} overdue: is the cron container up?"
            await asyncio.sleep(10)
    finally:
        for step in DELETE.steps:
            await run(step, job)
    assert not await cluster.namespace_exists(job.namespace)
    assert job.namespace not in await cluster.managed_namespaces()
