"""In a pod, without a kubeconfig, ``ClientKubeApi(None)`` loads the in-cluster configuration
(``kubernetes.config.load_incluster_config``) and keeps up with the kubelet rotating the
ServiceAccount token, without a cluster: the ``pod`` fixture (conftest.py) stands in for the
pod, a loopback https API server records the Authorization header of every request.

How the client (kubernetes 37) handles rotation: with ``try_refresh_token=True`` the loader
installs ``refresh_api_key_hook`` on the configuration, which the client calls before every
request; it re-reads the token file when the token it read last is older than the loader's
refresh period (one minute), judged by ``datetime.datetime.now()``. The kubelet renews a
projected token well before it expires (at 80% of its life, or after 24 h), so the old one
is still valid during that minute.
"""

from __future__ import annotations

import datetime
import types
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.config import incluster_config

from tests.cluster.conftest import FakePod
from tests.cluster.fakes import FakeHelm
from woostore_cluster import TransientClusterError
from woostore_cluster.kubeapi import ClientKubeApi, KubeApiError, in_a_pod
from woostore_cluster.kubernetes import KubernetesCluster

# The loader's refresh period in the client version we use (InClusterConfigLoader's
# _token_refresh_period); the rotation test shows both sides of it.
REFRESH_PERIOD = datetime.timedelta(minutes=1)


class LoaderClock:
    """The in-cluster loader's clock, made ours: ``incluster_config`` calls
    ``datetime.datetime.now()`` (to stamp each token it reads, and to see if the last one is
    older than the refresh period) and ``datetime.timedelta`` (for the period itself).
    Moving this clock past the period makes the next request re-read the token file at once,
    instead of the test sleeping for a minute."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = datetime.timedelta()
        fake = types.SimpleNamespace(
            datetime=types.SimpleNamespace(now=self.now), timedelta=datetime.timedelta
        )
        monkeypatch.setattr(incluster_config, "datetime", fake)

    def now(self) -> datetime.datetime:
        # Naive local time, as the loader's own datetime.datetime.now().
        return datetime.datetime.now() + self.offset

    def advance(self, delta: datetime.timedelta) -> None:
        self.offset += delta


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> LoaderClock:
    return LoaderClock(monkeypatch)


@pytest.fixture
def api(pod: FakePod) -> Iterator[ClientKubeApi]:
    client = ClientKubeApi(None)
    yield client
    client.close()


def test_in_a_pod_is_the_pods_variables_and_its_token_file(
    pod: FakePod, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert in_a_pod()
    pod.token.unlink()
    assert not in_a_pod()  # no token mounted (automountServiceAccountToken: false)
    pod.rotate("token-1")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "")
    assert not in_a_pod()


async def test_the_client_reaches_the_api_server_with_the_service_account_token(
    pod: FakePod, api: ClientKubeApi
) -> None:
    before = k8s.Configuration.get_default_copy().host
    assert await api.read_namespace("store-a") is None  # over https, the CA file verified
    await api.create_namespace("store-a", {})
    assert await api.read_namespace("store-a") is not None

    assert api._configuration.host == pod.url
    assert api._configuration.ssl_ca_cert == str(pod.ca)
    assert k8s.Configuration.get_default_copy().host == before  # the default is left alone
    # "bearer" as the client writes it; the API server takes the scheme in any case.
    assert pod.server.authorizations == ["bearer token-1"] * 3


async def test_a_rotated_token_is_sent_once_the_one_read_before_is_a_minute_old(
    pod: FakePod, api: ClientKubeApi, clock: LoaderClock
) -> None:
    await api.read_namespace("store-a")
    pod.rotate("token-2")
    await api.read_namespace("store-a")  # within the period: the token read before
    # 10 s short of the period, on top of the few real milliseconds since the first read
    clock.advance(REFRESH_PERIOD - datetime.timedelta(seconds=10))
    await api.read_namespace("store-a")
    clock.advance(datetime.timedelta(seconds=10))
    await api.read_namespace("store-a")  # the period is over: the file is read again
    await api.list_namespaces("woostore.io/store-id")
    # exec runs on an ApiClient of its own over the same configuration, so it refreshes
    # the same way: its websocket upgrade request carries the newest token too.
    pod.rotate("token-3")
    clock.advance(REFRESH_PERIOD)
    with pytest.raises(KubeApiError):  # this server refuses exec (403)
        await api.exec("store-a", "store-wordpress-x", "wordpress", ["wp"], None, 5)

    assert pod.server.authorizations == [
        "bearer token-1",
        "bearer token-1",
        "bearer token-1",
        "bearer token-2",
        "bearer token-2",
        "bearer token-3",
    ]
    method, path, query = pod.server.requests[-1]
    assert (method, path, query["command"]) == (
        "GET",
        "/api/v1/namespaces/store-a/pods/store-wordpress-x/exec",
        "wp",
    )


async def test_an_unreadable_token_is_a_transient_error_not_an_anonymous_request(
    pod: FakePod, api: ClientKubeApi, clock: LoaderClock
) -> None:
    """The client refuses an empty token file rather than send no token, and a missing one
    fails to open: no request leaves, and the driver calls it transient, so the step is
    tried again later, with the file whole again."""
    driver = KubernetesCluster(api, FakeHelm(), kubeconfig=None)
    await api.read_namespace("store-a")
    pod.rotate("")
    clock.advance(REFRESH_PERIOD)
    with pytest.raises(KubeApiError, match="Token file exists but empty") as empty:
        await api.read_namespace("store-a")
    with pytest.raises(TransientClusterError, match="reading namespace store-a"):
        await driver.namespace_exists("store-a")
    pod.token.unlink()
    with pytest.raises(TransientClusterError, match="No such file"):
        await driver.namespace_exists("store-a")
    pod.rotate("token-2")
    await api.read_namespace("store-a")

    assert (empty.value.status, empty.value.reason) == (0, "Credentials")
    assert pod.server.authorizations == ["bearer token-1", "bearer token-2"]
