"""Exec through the real client and a real WebSocket, against the loopback API server over
TLS (tests/cluster/api_server.py), and how the driver reads each way it can end:

- the command runs: its output and exit code come back;
- the API server refuses the upgrade (RBAC, a missing pod, an overloaded server): the client
  says ``ApiException(status=0)`` for all of them, and the status is read back out of the
  handshake message, so a denial is permanent and an overload transient;
- the stream is cut mid-command: websocket-client's own error, no OSError, is transient.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from tests.cluster.api_server import ExecRun, FakeApiServer
from tests.cluster.conftest import UNREACHABLE_KUBECONFIG
from tests.cluster.fakes import FakeHelm
from tests.cluster.store_api import serve
from tests.cluster.tls import make_tls
from woostore_cluster import PermanentClusterError, TransientClusterError
from woostore_cluster.kubeapi import ClientKubeApi, KubeApiError, translate_exec_refusal
from woostore_cluster.kubernetes import KubernetesCluster

NS, POD = "store-a", "store-wordpress-x"
FORBIDDEN = (
    f'pods "{POD}" is forbidden: User "system:serviceaccount:woostore:woostore-provisioner" '
    f'cannot create resource "pods/exec" in API group "" in the namespace "{NS}"'
)


@dataclass
class Served:
    server: FakeApiServer
    api: ClientKubeApi
    driver: KubernetesCluster


def tls_kubeconfig(url: str, ca: Path) -> str:
    """A kubeconfig for the server at ``url``, verified against the CA file ``ca``."""
    return UNREACHABLE_KUBECONFIG.replace("https://127.0.0.1:1", url).replace(
        "insecure-skip-tls-verify: true", f"certificate-authority: {ca}"
    )


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """The API server over https, its WordPress pod ready and exec accepted; the client
    verifies the server against the CA its kubeconfig names."""
    tls = make_tls(tmp_path / "tls")
    server = FakeApiServer(exec_refusal=None, wordpress_ready=True)
    async with serve(server.app(), tls) as url:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(tls_kubeconfig(url, tls.ca))
        api = ClientKubeApi(kubeconfig)
        try:
            yield Served(server, api, KubernetesCluster(api, FakeHelm(), kubeconfig=kubeconfig))
        finally:
            api.close()


async def test_a_command_runs_over_the_stream(served: Served) -> None:
    served.server.exec_run = ExecRun(stdout="11.2.0\n")

    result = await served.api.exec(NS, POD, "wordpress", ["wp", "plugin", "list"], None, 10)
    through_the_driver = await served.driver.wp(NS, ["plugin", "list"])

    assert (result.exit_code, result.stdout, result.stderr) == (0, "11.2.0\n", "")
    assert (through_the_driver.exit_code, through_the_driver.stdout) == (0, "11.2.0\n")
    method, path, _ = served.server.requests[-1]
    assert (method, path) == ("GET", f"/api/v1/namespaces/{NS}/pods/{POD}/exec")


async def test_the_connection_is_closed_when_the_command_ends(tmp_path: Path) -> None:
    """websocket-client counts the stream closed once it has answered the server's close
    frame, and leaves the socket open: the driver closes it, so no connection to the API
    server outlives its command (the server's shutdown, which waits for its connections,
    would otherwise wait out its TLS shutdown timeout, 30 s)."""
    tls = make_tls(tmp_path / "tls")
    server = FakeApiServer(exec_refusal=None, exec_run=ExecRun(stdout="ok"))
    kubeconfig = tmp_path / "kubeconfig"
    async with asyncio.timeout(10):  # the server's shutdown included
        async with serve(server.app(), tls) as url:
            kubeconfig.write_text(tls_kubeconfig(url, tls.ca))
            api = ClientKubeApi(kubeconfig)
            try:
                result = await api.exec(NS, POD, "wordpress", ["wp", "option", "get"], None, 10)
            finally:
                api.close()

    assert result.stdout == "ok"


async def test_a_failing_command_brings_its_exit_code(served: Served) -> None:
    served.server.exec_run = ExecRun(
        stdout="",
        status='{"metadata":{},"status":"Failure","reason":"NonZeroExitCode",'
        '"message":"command terminated with non-zero exit code: exit status 1",'
        '"details":{"causes":[{"reason":"ExitCode","message":"1"}]}}',
    )

    result = await served.driver.wp(NS, ["core", "is-installed"])

    assert result.exit_code == 1


async def test_a_stream_cut_mid_command_is_transient(served: Served) -> None:
    served.server.exec_run = ExecRun(stdout="Installing WooCommerce", drop=True)

    with pytest.raises(KubeApiError) as raised:
        await served.api.exec(NS, POD, "wordpress", ["wp", "plugin", "activate"], None, 10)
    with pytest.raises(TransientClusterError, match="stream broke mid-command") as mapped:
        await served.driver.wp(NS, ["plugin", "activate", "woocommerce"])

    assert (raised.value.status, raised.value.reason) == (0, "StreamLost")
    assert "Connection to remote host was lost" in raised.value.message
    assert f"running wp plugin activate in {NS}/{POD}" in str(mapped.value)


REFUSALS = {
    403: (403, "Forbidden", FORBIDDEN),
    401: (401, "Unauthorized", "Unauthorized"),
    404: (404, "NotFound", f'pods "{POD}" not found'),
}


@pytest.mark.parametrize("code", sorted(REFUSALS))
async def test_a_refused_exec_is_permanent_with_the_servers_words(
    served: Served, code: int
) -> None:
    """An RBAC denial will not pass by trying again: the store fails at once, saying why."""
    served.server.exec_refusal = REFUSALS[code]
    message = REFUSALS[code][2]

    with pytest.raises(KubeApiError) as raised:
        await served.api.exec(NS, POD, "wordpress", ["wp", "core", "version"], None, 10)
    with pytest.raises(PermanentClusterError) as mapped:
        await served.driver.wp(NS, ["core", "version"])

    reason = HTTPStatus(code).phrase  # the status line's, as for any other request
    assert (raised.value.status, raised.value.reason) == (code, reason)
    assert raised.value.message == f"exec refused at the websocket handshake: {message}"
    assert str(mapped.value) == (
        f"running wp core version in {NS}/{POD}: {code} {reason}: "
        f"exec refused at the websocket handshake: {message}"
    )


@pytest.mark.parametrize(
    ("refusal", "delay"),
    [
        ((500, "InternalError", "error dialing backend: dial tcp 10.0.0.5:10250: i/o timeout"), 5),
        ((503, "ServiceUnavailable", "the server is currently unable to handle the request"), 5),
        ((429, "TooManyRequests", "the server has received too many requests"), 2),
    ],
    ids=["500", "503", "429"],
)
async def test_an_exec_refused_for_now_is_transient(
    served: Served, refusal: tuple[int, str, str], delay: float
) -> None:
    served.server.exec_refusal = refusal

    with pytest.raises(TransientClusterError) as mapped:
        await served.driver.wp(NS, ["core", "version"])

    assert f"{refusal[0]} {HTTPStatus(refusal[0]).phrase}: exec refused" in str(mapped.value)
    assert mapped.value.delay == delay  # 429: the server's Retry-After


def test_a_handshake_message_without_its_context_still_gives_the_status() -> None:
    """The status is read from the message alone: the handshake's own error (for
    Retry-After) is a detail of the client that may change."""
    bare = ApiException(
        status=0,
        reason="Handshake status 403 Forbidden -+-+- {'content-length': '0'} -+-+- None",
    )

    error = translate_exec_refusal(bare)

    assert (error.status, error.reason) == (403, "Forbidden")
    assert error.message == "exec refused at the websocket handshake: Forbidden"


def test_no_answer_at_all_stays_unreachable() -> None:
    error = translate_exec_refusal(ApiException(status=0, reason="[Errno 111] Connection refused"))

    assert (error.status, error.message) == (0, "[Errno 111] Connection refused")
