"""``ClientKubeApi``, the real ``KubeApi`` over the official client, without a cluster: it
loads its own configuration (the process-wide default is never touched), a refused
connection becomes a transient error through the real client, and the server's answers
(error bodies, exec status channels) are read the way the API server writes them."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.stream.ws_client import V4_CHANNEL_PROTOCOL, V5_CHANNEL_PROTOCOL

from tests.cluster.api_server import FakeApiServer
from tests.cluster.fakes import FakeHelm
from woostore_cluster import TransientClusterError
from woostore_cluster.kubeapi import (
    ClientKubeApi,
    KubeApiError,
    exit_code_of,
    run_exec_stream,
    translate_api_exception,
)
from woostore_cluster.kubernetes import KubernetesCluster


def test_loading_a_kubeconfig_leaves_the_default_configuration_alone(kubeconfig: Path) -> None:
    before = k8s.Configuration.get_default_copy().host

    api = ClientKubeApi(kubeconfig)

    assert api._configuration.host == "https://127.0.0.1:1"
    assert k8s.Configuration.get_default_copy().host == before
    api.close()


async def test_an_api_server_that_refuses_connections_is_transient(kubeconfig: Path) -> None:
    api = ClientKubeApi(kubeconfig)
    driver = KubernetesCluster(api, FakeHelm(), kubeconfig=kubeconfig)
    try:
        with pytest.raises(KubeApiError) as raised:
            await api.read_namespace("store-x")
        assert raised.value.status == 0
        with pytest.raises(TransientClusterError, match="reading namespace store-x"):
            await driver.namespace_exists("store-x")
        with pytest.raises(KubeApiError) as exec_error:
            await api.exec("store-x", "pod", "wordpress", ["wp", "cli", "version"], None, 5)
        assert exec_error.value.status == 0
    finally:
        api.close()


def api_exception(
    status: int, reason: str, body: Any, headers: dict[str, str] | None = None
) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps(body) if not isinstance(body, str) else body
    error.headers = headers or {}
    return error


def test_the_servers_own_message_is_kept_and_retry_after_read() -> None:
    error = translate_api_exception(
        api_exception(
            429,
            "Too Many Requests",
            {"kind": "Status", "message": "the server has received too many requests"},
            {"Retry-After": "3"},
        )
    )

    assert (error.status, error.reason, error.retry_after) == (429, "Too Many Requests", 3.0)
    assert error.message == "the server has received too many requests"
    assert str(error) == "429 Too Many Requests: the server has received too many requests"


def test_a_body_that_is_not_json_falls_back_to_the_reason() -> None:
    error = translate_api_exception(api_exception(502, "Bad Gateway", "<html>proxy</html>"))

    assert (error.status, error.message) == (502, "Bad Gateway")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ('{"metadata":{},"status":"Success"}', 0),
        (
            '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit '
            'code: error executing command [wp core is-installed], exit code 1",'
            '"reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"1"}]}}',
            1,
        ),
        (
            '{"metadata":{},"status":"Failure","message":"OCI runtime exec failed: exec: \\"wp\\":'
            ' executable file not found in $PATH","reason":"InternalError"}',
            126,
        ),
        ("", 0),
    ],
)
def test_the_exit_code_is_read_from_the_error_channel(status: str, code: int) -> None:
    assert exit_code_of(status) == code


class FakeStream:
    """Just the WSClient surface ``run_exec_stream`` uses: what the server would send, in frames."""

    def __init__(self, protocol: str, frames: int, status: str = '{"status":"Success"}') -> None:
        self.subprotocol = protocol
        self.frames = frames
        self.stdin: list[str] = []
        self.closed_channels: list[int] = []
        self.channels = {1: "", 2: "", 3: ""}
        self.status = status

    def write_stdin(self, data: str) -> None:
        self.stdin.append(data)

    def close_channel(self, channel: int) -> None:
        self.closed_channels.append(channel)

    def is_open(self) -> bool:
        return self.frames > 0

    def update(self, timeout: float) -> None:
        if self.frames == 0:
            return
        self.frames -= 1
        self.channels[1] += "out;"
        if self.frames == 0:
            self.channels[3] = self.status

    def read_channel(self, channel: int) -> str:
        return self.channels[channel]


def test_stdin_is_sent_and_closed_on_the_v5_protocol() -> None:
    ws = FakeStream(V5_CHANNEL_PROTOCOL, frames=2)

    result = run_exec_stream(ws, "secret\n", timeout=10, cancelled=threading.Event())

    assert ws.stdin == ["secret\n"]
    assert ws.closed_channels == [0]  # end of input: the command sees EOF
    assert (result.exit_code, result.stdout) == (0, "out;out;")


def test_stdin_on_the_v4_protocol_is_sent_without_closing() -> None:
    ws = FakeStream(V4_CHANNEL_PROTOCOL, frames=1)

    run_exec_stream(ws, "secret\n", timeout=10, cancelled=threading.Event())

    assert ws.closed_channels == []  # v4 cannot; WP-CLI's --prompt reads one line


def test_an_exec_that_never_ends_stops_at_its_deadline() -> None:
    ws = FakeStream(V5_CHANNEL_PROTOCOL, frames=10**9)

    with pytest.raises(KubeApiError, match=r"did not finish within 0\.01s"):
        run_exec_stream(ws, None, timeout=0.01, cancelled=threading.Event())


def test_an_abandoned_exec_stops() -> None:
    cancelled = threading.Event()
    cancelled.set()

    with pytest.raises(KubeApiError, match="abandoned"):
        run_exec_stream(FakeStream(V5_CHANNEL_PROTOCOL, frames=5), None, 10, cancelled)


# -- the real client against a loopback API server -------------------------------------------


async def test_namespaces_round_trip_through_the_real_client(
    api: tuple[ClientKubeApi, FakeApiServer],
) -> None:
    client, server = api
    labels = {"app.kubernetes.io/managed-by": "woostore", "woostore.io/store-id": "s-1"}

    assert await client.read_namespace("store-a") is None  # 404 is "not there"
    await client.create_namespace("store-a", labels)
    await client.create_namespace("other", {})
    with pytest.raises(KubeApiError) as exists:
        await client.create_namespace("store-a", labels)
    selector = "app.kubernetes.io/managed-by=woostore,woostore.io/store-id"
    listed = await client.list_namespaces(selector)
    await client.delete_namespace("store-a")
    terminating = await client.read_namespace("store-a")

    assert (exists.value.status, exists.value.message) == (
        409,
        'namespaces "store-a" already exists',
    )
    assert [(ns.name, dict(ns.labels), ns.phase) for ns in listed] == [
        ("store-a", labels, "Active")
    ]
    assert terminating is not None
    assert terminating.phase == "Terminating"
    assert terminating.conditions == (
        "Some content in the namespace has finalizers remaining: "
        "kubernetes.io/pvc-protection in 1 resource instances",
    )
    assert ("GET", "/api/v1/namespaces", {"labelSelector": selector}) in server.requests


async def test_secrets_are_sent_as_string_data_and_read_back_decoded(
    api: tuple[ClientKubeApi, FakeApiServer],
) -> None:
    client, server = api
    password = "pässwörd-ü"

    await client.create_secret("store-a", "store-credentials", {"admin-password": password})

    body = server.secrets[("store-a", "store-credentials")]
    assert body["stringData"] == {"admin-password": password}
    assert body["type"] == "Opaque"
    assert await client.read_secret("store-a", "store-credentials") == {"admin-password": password}
    assert await client.read_secret("store-a", "missing") is None


async def test_a_secret_is_replaced_with_the_keys_given_and_its_others_kept(
    api: tuple[ClientKubeApi, FakeApiServer],
) -> None:
    """A read, then a PUT of the whole Secret as read (its resourceVersion included) with the
    new keys as stringData: the API server's "update", which the store-manager role grants."""
    client, server = api
    old, new = "old-pässwörd", "new-pässwörd"
    await client.create_secret(
        "store-a", "store-credentials", {"admin-password": old, "db-password": "db-one"}
    )

    await client.replace_secret("store-a", "store-credentials", {"admin-password": new})
    await client.replace_secret("store-a", "store-credentials", {"admin-password": new})

    assert await client.read_secret("store-a", "store-credentials") == {
        "admin-password": new,
        "db-password": "db-one",
    }
    first, second = server.secret_puts
    assert first["metadata"]["resourceVersion"] == "1"
    assert second["metadata"]["resourceVersion"] == "2"  # read again, not remembered
    assert first["stringData"] == {"admin-password": new}
    assert first["type"] == "Opaque"
    # create; read and replace, twice; the read of the test
    assert [method for method, _, _ in server.requests] == [
        "POST", "GET", "PUT", "GET", "PUT", "GET",
    ]  # fmt: skip


async def test_replacing_a_missing_secret_is_not_found_and_sends_nothing(
    api: tuple[ClientKubeApi, FakeApiServer],
) -> None:
    client, server = api

    with pytest.raises(KubeApiError) as raised:
        await client.replace_secret("store-a", "missing", {"admin-password": "x"})

    assert raised.value.status == 404
    assert server.secret_puts == []


async def test_a_secret_changed_since_it_was_read_is_a_conflict_not_overwritten(
    api: tuple[ClientKubeApi, FakeApiServer],
) -> None:
    client, server = api
    await client.create_secret("store-a", "store-credentials", {"admin-password": "one"})
    server.concurrent_secret_writes = True

    with pytest.raises(KubeApiError) as raised:
        await client.replace_secret("store-a", "store-credentials", {"admin-password": "two"})

    assert raised.value.status == 409
    server.concurrent_secret_writes = False
    assert await client.read_secret("store-a", "store-credentials") == {"admin-password": "one"}


async def test_a_refused_replace_quotes_no_value_of_the_secret(
    api: tuple[ClientKubeApi, FakeApiServer],
) -> None:
    """The server's message may quote the object: neither the values kept nor the new ones
    reach the error."""
    client, server = api
    kept, new = "kept-db-password-4711", "new-admin-password-0815"
    await client.create_secret("store-a", "store-credentials", {"db-password": kept})
    server.secret_put_refusal = (
        422,
        "Invalid",
        f'Secret "store-credentials" is invalid: data: {{"db-password": "{kept}", '
        f'"admin-password": "{new}"}}',
    )

    with pytest.raises(KubeApiError) as raised:
        await client.replace_secret("store-a", "store-credentials", {"admin-password": new})

    assert raised.value.status == 422
    assert kept not in str(raised.value)
    assert new not in str(raised.value)
    assert "[redacted]" in raised.value.message


async def test_a_role_binding_and_an_access_review_through_the_real_client(
    api: tuple[ClientKubeApi, FakeApiServer],
) -> None:
    client, server = api
    labels = {"app.kubernetes.io/managed-by": "woostore"}

    before = await client.allowed("store-a", "create", "secrets")
    await client.create_role_binding(
        "store-a", "woostore-store-manager", "ns-rel-store-manager", ("ns", "rel-prov"), labels
    )
    after = await client.allowed("store-a", "create", "secrets")
    with pytest.raises(KubeApiError) as again:
        await client.create_role_binding(
            "store-a", "woostore-store-manager", "ns-rel-store-manager", ("ns", "rel-prov"), {}
        )

    assert (before, after, again.value.status) == (False, True, 409)
    body = server.role_bindings[("store-a", "woostore-store-manager")]
    assert body["metadata"] == {"name": "woostore-store-manager", "labels": labels}
    assert body["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "ns-rel-store-manager",
    }
    assert body["subjects"] == [{"kind": "ServiceAccount", "name": "rel-prov", "namespace": "ns"}]
    assert server.reviews[0]["spec"] == {
        "resourceAttributes": {"namespace": "store-a", "verb": "create", "resource": "secrets"}
    }


async def test_workloads_and_pods_are_read_with_their_problems(
    api: tuple[ClientKubeApi, FakeApiServer],
) -> None:
    client, _ = api

    deployment, statefulset = await client.list_workloads("store-a")
    (pod,) = await client.list_pods("store-a", "component=wordpress")

    assert not deployment.ready  # an old observed generation, no ready replica
    assert "exceeded quota" in str(deployment.problem)
    assert statefulset.ready
    assert (pod.name, pod.phase, pod.ready) == ("store-wordpress-x", "Pending", False)
    assert not pod.deleting
    (container,) = pod.containers
    assert container.waiting_reason == "ImagePullBackOff"
    assert "ghcr.io/woostore/wp:bad" in str(container.waiting_message)


async def test_a_throttled_write_carries_the_servers_delay(
    api: tuple[ClientKubeApi, FakeApiServer],
) -> None:
    client, server = api
    server.throttle = 1

    with pytest.raises(KubeApiError) as raised:
        await client.create_namespace("store-a", {})

    assert (raised.value.status, raised.value.retry_after) == (429, 2.0)
    assert len(server.requests) == 1  # writes are never retried by the client


async def test_throttled_reads_are_retried_by_the_client_then_transient(
    api: tuple[ClientKubeApi, FakeApiServer], kubeconfig: Path
) -> None:
    """urllib3 already retries a GET answered 429 with Retry-After (3 times); past that the
    driver's caller retries later."""
    client, server = api
    server.throttle, server.retry_after = 10, "0"
    driver = KubernetesCluster(client, FakeHelm(), kubeconfig=kubeconfig)

    with pytest.raises(TransientClusterError, match="too many requests") as raised:
        await driver.managed_namespaces()

    assert len(server.requests) == 4
    assert raised.value.delay == 1.0  # "now" is taken as "in a second": no hot loop
