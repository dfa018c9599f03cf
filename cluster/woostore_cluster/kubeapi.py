"""Our own narrow, typed view of the Kubernetes API: what the driver needs and nothing more.

The official client is untyped and answers with generated models; the driver works with the
small dataclasses of ``kubeobjects.py`` instead, through the ``KubeApi`` protocol, which
tests replace with a stateful fake. ``ClientKubeApi`` is the real implementation over the
official client: every call runs in a worker thread, so the event loop never blocks on the
API server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import json
import os
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterator, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol

import urllib3
import websocket
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException, incluster_config
from kubernetes.stream import stream
from kubernetes.stream.ws_client import (
    ERROR_CHANNEL,
    STDERR_CHANNEL,
    STDIN_CHANNEL,
    STDOUT_CHANNEL,
    V5_CHANNEL_PROTOCOL,
)
from websocket import ABNF

from woostore_cluster.kubeobjects import ContainerState, ExecResult, Namespace, Pod, Workload

# Seconds to connect and to wait for an answer, per API request: a request never hangs a
# worker thread for ever.
REQUEST_TIMEOUT = (10.0, 30.0)

# A streaming exec's bounds, which keep its memory small whatever the stream's length:
# - stdin goes in websocket frames of at most this many bytes, as kubectl sends it (client-go
#   copies stdin 32 KiB at a time), far below what the API server takes in one frame;
STDIN_FRAME_BYTES = 32 * 1024
# - stdout frames read ahead of the consumer: past that, the frames wait in TCP's buffers and
#   the command, in the pod, waits for the consumer;
STDOUT_FRAMES_AHEAD = 16
# - what is kept of stderr, for the error a failed command raises: its end, where the reason
#   usually is.
STDERR_TAIL_BYTES = 2048
# Streaming execs at once, each holding a thread for as long as its bytes take (hours, for a
# big store): more wait for one to end.
STREAMS_AT_ONCE = 16
LOG_LINE_BYTES = 4096  # of a crashing container's log: its last line is all the owner is told


class CommandFailed(Exception):
    """A streamed command ran and exited non-zero (126: it could not be started); ``stderr`` is
    the end of what it wrote there."""

    def __init__(self, exit_code: int, stderr: str) -> None:
        super().__init__(f"exit code {exit_code}: {stderr}" if stderr else f"exit code {exit_code}")
        self.exit_code = exit_code
        self.stderr = stderr


class KubeApiError(Exception):
    """The API server refused a request (``status`` is its HTTP status), or could not be
    reached at all (``status`` 0). ``message`` is the server's own explanation."""

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else f"{reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class KubeApi(Protocol):
    """The Kubernetes calls the driver makes. Reads answer ``None`` for "not found"; every
    other refusal raises ``KubeApiError``."""

    async def read_namespace(self, name: str) -> Namespace | None: ...

    async def create_namespace(self, name: str, labels: Mapping[str, str]) -> None: ...

    async def delete_namespace(self, name: str) -> None: ...

    async def list_namespaces(self, label_selector: str) -> list[Namespace]: ...

    async def create_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None: ...

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None: ...

    async def replace_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        """Set ``data``'s keys in an existing Secret, keeping its other keys: the Secret is read
        and replaced (PUT, the "update" verb) with the resourceVersion read, so a change made
        in between fails with 409 instead of being overwritten. 404 when it does not exist.
        The Secret's values, old and new, never appear in the error."""

    async def create_role_binding(
        self,
        namespace: str,
        name: str,
        cluster_role: str,
        account: tuple[str, str],
        labels: Mapping[str, str],
    ) -> None:
        """A RoleBinding of ``cluster_role`` to the ServiceAccount ``account`` (namespace,
        name)."""

    async def allowed(self, namespace: str, verb: str, resource: str) -> bool:
        """Whether the API server lets us ``verb`` ``resource`` (core group) in ``namespace``
        now: a SelfSubjectAccessReview, which every authenticated identity may make."""

    async def list_workloads(self, namespace: str) -> list[Workload]: ...

    async def list_pods(self, namespace: str, label_selector: str = "") -> list[Pod]: ...

    async def pending_claims(self, namespace: str) -> list[str]:
        """The names of the namespace's PersistentVolumeClaims still Pending (no volume)."""

    async def last_log_line(self, namespace: str, pod: str, container: str) -> str | None:
        """The last line the container's previous run logged (a crashing container's last
        words), or None when it has no previous run or logged nothing."""

    async def exec(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: Sequence[str],
        stdin: str | None,
        timeout: float,
    ) -> ExecResult:
        """Run ``command`` (an argv list, no shell) in the container, feeding it ``stdin``."""

    def exec_streaming(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: Sequence[str],
        stdin: AsyncIterable[bytes] | None,
        idle_timeout: float,
    ) -> AsyncGenerator[bytes, None]:
        """Run ``command`` (an argv list, no shell) in the container, feeding it ``stdin`` chunk
        by chunk and then end-of-input, and yield its stdout, bytes, as it comes: memory stays
        bounded whatever the size of either. After the last chunk, ``CommandFailed`` for a
        non-zero exit, ``KubeApiError`` for a stream that broke, or that the server left
        silent for ``idle_timeout`` seconds; an error of ``stdin`` itself is raised as it is,
        and the command never sees the end of an input that failed. Closing the generator
        early (or cancelling its consumer) closes the stream."""


# -- the real implementation ----------------------------------------------------------------


def in_a_pod() -> bool:
    """Whether this process runs in a Kubernetes pod with its ServiceAccount token mounted:
    the API server's address in ``KUBERNETES_SERVICE_HOST``/``_PORT`` (the kubelet sets them)
    and the token file where the client looks for it. The same test client-go makes, so
    helm run without ``--kubeconfig`` uses the in-cluster configuration too."""
    return bool(
        os.environ.get(incluster_config.SERVICE_HOST_ENV_NAME)
        and os.environ.get(incluster_config.SERVICE_PORT_ENV_NAME)
        # Looked up at call time: tests point the client's constant at a file of theirs.
        and os.path.isfile(incluster_config.SERVICE_TOKEN_FILENAME)
    )


class ClientKubeApi:
    """``KubeApi`` over the official ``kubernetes`` client, with its own configuration (the
    process-wide default configuration is never touched): loaded from a kubeconfig file, or,
    with ``kubeconfig=None``, from the pod's ServiceAccount (in-cluster)."""

    def __init__(self, kubeconfig: Path | None, context: str | None = None) -> None:
        configuration = k8s.Configuration()
        if kubeconfig is None:
            # The API server at https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, the
            # ServiceAccount's CA and token files. try_refresh_token=True installs a hook the
            # client calls before every request (exec included: its ApiClient shares this
            # configuration) that re-reads the token file once the token read last is a minute
            # old, so the bound token the kubelet rotates is picked up; without it the token
            # read here would be sent until it expires.
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]  # untyped in the client
                client_configuration=configuration, try_refresh_token=True
            )
        else:
            # persist_config=False: never write refreshed tokens back into the operator's file.
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]  # untyped in the client
                config_file=str(kubeconfig),
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        self._configuration = configuration
        self._client = k8s.ApiClient(configuration)
        self._core = k8s.CoreV1Api(self._client)
        self._apps = k8s.AppsV1Api(self._client)
        self._rbac = k8s.RbacAuthorizationV1Api(self._client)
        self._authorization = k8s.AuthorizationV1Api(self._client)
        # Threads of their own: streams held on the loop's default executor would starve every
        # other call, which runs there (a few threads on a small node).
        self._streams = concurrent.futures.ThreadPoolExecutor(
            STREAMS_AT_ONCE, thread_name_prefix="exec-stream"
        )

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]  # untyped in the client
        self._streams.shutdown(wait=False)

    async def read_namespace(self, name: str) -> Namespace | None:
        found = await self._call(self._core.read_namespace, name, missing_ok=True)
        return None if found is None else _namespace(found)

    async def create_namespace(self, name: str, labels: Mapping[str, str]) -> None:
        body = k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels=dict(labels)))
        await self._call(self._core.create_namespace, body)

    async def delete_namespace(self, name: str) -> None:
        await self._call(self._core.delete_namespace, name)

    async def list_namespaces(self, label_selector: str) -> list[Namespace]:
        found = await self._call(self._core.list_namespace, label_selector=label_selector)
        return [_namespace(item) for item in found.items]

    async def create_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        body = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=name), type="Opaque", string_data=dict(data)
        )
        await self._call(self._core.create_namespaced_secret, namespace, body)

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        found = await self._call(
            self._core.read_namespaced_secret, name, namespace, missing_ok=True
        )
        if found is None:
            return None
        try:
            return {
                key: base64.b64decode(value).decode() for key, value in (found.data or {}).items()
            }
        except (binascii.Error, UnicodeDecodeError) as error:
            # Never the value itself in the message: only which Secret could not be read.
            raise KubeApiError(
                422, "Invalid", f"secret {namespace}/{name} holds data that is not text"
            ) from error

    async def replace_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        found = await self._call(self._core.read_namespaced_secret, name, namespace)
        # Sent back whole (labels, type, the resourceVersion): only the keys given change. The
        # API server merges stringData into data when it stores the Secret.
        found.string_data = dict(data)
        secrets = [*data.values(), *_decoded_values(found.data)]
        try:
            await self._call(self._core.replace_namespaced_secret, name, namespace, found)
        except KubeApiError as error:
            message = error.message
            for secret in secrets:
                if secret:
                    message = message.replace(secret, "[redacted]")
            raise KubeApiError(error.status, error.reason, message, error.retry_after) from None

    async def create_role_binding(
        self,
        namespace: str,
        name: str,
        cluster_role: str,
        account: tuple[str, str],
        labels: Mapping[str, str],
    ) -> None:
        account_namespace, account_name = account
        body = k8s.V1RoleBinding(
            metadata=k8s.V1ObjectMeta(name=name, labels=dict(labels)),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=cluster_role
            ),
            subjects=[
                k8s.RbacV1Subject(
                    kind="ServiceAccount", name=account_name, namespace=account_namespace
                )
            ],
        )
        await self._call(self._rbac.create_namespaced_role_binding, namespace, body)

    async def allowed(self, namespace: str, verb: str, resource: str) -> bool:
        body = k8s.V1SelfSubjectAccessReview(
            spec=k8s.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s.V1ResourceAttributes(
                    namespace=namespace, verb=verb, resource=resource
                )
            )
        )
        review = await self._call(self._authorization.create_self_subject_access_review, body)
        return bool(review.status and review.status.allowed)

    async def list_workloads(self, namespace: str) -> list[Workload]:
        deployments = await self._call(self._apps.list_namespaced_deployment, namespace)
        statefulsets = await self._call(self._apps.list_namespaced_stateful_set, namespace)
        return [_workload("Deployment", item) for item in deployments.items] + [
            _workload("StatefulSet", item) for item in statefulsets.items
        ]

    async def list_pods(self, namespace: str, label_selector: str = "") -> list[Pod]:
        found = await self._call(
            self._core.list_namespaced_pod, namespace, label_selector=label_selector
        )
        return [_pod(item) for item in found.items]

    async def pending_claims(self, namespace: str) -> list[str]:
        found = await self._call(self._core.list_namespaced_persistent_volume_claim, namespace)
        return [item.metadata.name for item in found.items if item.status.phase == "Pending"]

    async def last_log_line(self, namespace: str, pod: str, container: str) -> str | None:
        try:
            text = await self._call(
                self._core.read_namespaced_pod_log,
                pod,
                namespace,
                container=container,
                previous=True,
                tail_lines=1,
                limit_bytes=LOG_LINE_BYTES,
            )
        except KubeApiError as error:
            if error.status == 400:  # no previous run (yet): nothing it said
                return None
            raise
        lines = [line for line in str(text or "").splitlines() if line.strip()]
        return lines[-1] if lines else None

    async def exec(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: Sequence[str],
        stdin: str | None,
        timeout: float,
    ) -> ExecResult:
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(
                self._exec, namespace, pod, container, list(command), stdin, timeout, cancelled
            )
        except asyncio.CancelledError:
            cancelled.set()  # the worker thread closes the stream within a second
            raise

    async def exec_streaming(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: Sequence[str],
        stdin: AsyncIterable[bytes] | None,
        idle_timeout: float,
    ) -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        bridge = _ExecBridge(loop, stdin)
        worker = loop.run_in_executor(
            self._streams, self._exec_streaming, namespace, pod, container, list(command), bridge,
            idle_timeout,
        )  # fmt: skip
        try:
            while (chunk := await bridge.next_stdout()) is not None:
                yield chunk
        except BaseException:
            # The consumer left early (it closed the generator, or was cancelled): the worker
            # closes the stream at once, and is waited for, so no connection outlives the
            # stream. How the stream ended is no news to a consumer that left.
            bridge.abandon()
            with contextlib.suppress(Exception):
                await worker
            raise
        try:
            await worker
        except Exception:
            if bridge.input_failure is None:
                raise
        if bridge.input_failure is not None:
            raise bridge.input_failure  # the input's own error, not the stream it cut short

    # -- internals -------------------------------------------------------------------------

    async def _call(
        self, method: Callable[..., Any], *args: Any, missing_ok: bool = False, **kwargs: Any
    ) -> Any:
        """Run one blocking client call in a worker thread, translating its errors."""
        try:
            return await asyncio.to_thread(
                method, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs
            )
        except ApiException as error:
            if missing_ok and error.status == 404:
                return None
            raise translate_api_exception(error) from None
        except ConfigException as error:
            # The in-cluster token could not be re-read (an empty file): nothing was sent.
            raise KubeApiError(0, "Credentials", str(error)) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeApiError(0, "Unreachable", describe(error)) from None

    def _exec(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        stdin: str | None,
        timeout: float,
        cancelled: threading.Event,
    ) -> ExecResult:
        with self._exec_websocket(
            namespace, pod, container, command, stdin=stdin is not None
        ) as ws:
            return run_exec_stream(ws, stdin, timeout, cancelled)

    def _exec_streaming(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        bridge: _ExecBridge,
        idle_timeout: float,
    ) -> None:
        try:
            with self._exec_websocket(
                namespace, pod, container, command, stdin=bridge.has_stdin
            ) as ws:
                pump_exec_stream(ws, bridge, idle_timeout)
        finally:
            bridge.finish()  # after the websocket is closed

    @contextlib.contextmanager
    def _exec_websocket(
        self, namespace: str, pod: str, container: str, command: list[str], *, stdin: bool
    ) -> Iterator[Any]:
        """The exec's websocket (the client's ``WSClient``), open while the block runs; the
        client's and websocket-client's errors, at the upgrade or in the block, as
        ``KubeApiError``."""
        # A client of its own: ``stream`` swaps the client's request method while it runs,
        # which would send every other thread's request on a shared client over a websocket.
        api_client = k8s.ApiClient(self._configuration)
        try:
            try:
                ws = stream(
                    k8s.CoreV1Api(api_client).connect_get_namespaced_pod_exec,
                    pod,
                    namespace,
                    command=command,
                    container=container,
                    stdin=stdin,
                    stdout=True,
                    stderr=True,
                    tty=False,
                    _preload_content=False,
                )
            except ApiException as error:
                raise translate_exec_refusal(error) from None
            try:
                yield ws
            finally:
                ws.close()
                # Once websocket-client has answered the server's close frame it counts itself
                # closed, and close() leaves the socket open (until garbage collection): a
                # connection to the API server left behind by every command that ends well.
                if ws.sock is not None:
                    ws.sock.shutdown()
        except websocket.WebSocketException as error:
            # websocket-client's own errors (the connection closed without a close frame, a
            # read timed out) are no OSError. The stream broke: the command may or may not have
            # finished in the pod, and the caller may try again.
            raise KubeApiError(
                0, "StreamLost", f"the exec stream broke mid-command: {describe(error)}"
            ) from None
        except ConfigException as error:
            # The in-cluster token could not be re-read (an empty file): nothing was sent.
            raise KubeApiError(0, "Credentials", str(error)) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeApiError(0, "Unreachable", describe(error)) from None
        finally:
            api_client.close()  # type: ignore[no-untyped-call]  # untyped in the client


def run_exec_stream(
    ws: Any, stdin: str | None, timeout: float, cancelled: threading.Event
) -> ExecResult:
    if stdin is not None:
        ws.write_stdin(stdin)
        if ws.subprotocol == V5_CHANNEL_PROTOCOL:
            # Only the v5 protocol can say "end of input"; older servers need the command to
            # stop reading on its own (WP-CLI's --prompt reads one line).
            ws.close_channel(STDIN_CHANNEL)
    deadline = time.monotonic() + timeout
    while ws.is_open():
        if cancelled.is_set():
            raise KubeApiError(0, "Cancelled", "the command was abandoned by its caller")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise KubeApiError(0, "Timeout", f"the command did not finish within {timeout:g}s")
        ws.update(timeout=min(1.0, remaining))
    stdout = ws.read_channel(STDOUT_CHANNEL)
    stderr = ws.read_channel(STDERR_CHANNEL)
    return ExecResult(exit_code_of(ws.read_channel(ERROR_CHANNEL), stderr), stdout, stderr)


class _ExecBridge:
    """What a streaming exec's worker thread shares with the event loop its consumer runs on.

    Stdout goes to the loop through a queue the worker may fill only ``STDOUT_FRAMES_AHEAD``
    deep: past that it waits for room, and so stops reading the websocket (backpressure, down
    to the command). Stdin comes from the loop a chunk at a time, the next one asked for once
    the last is sent. A socket pair wakes the worker from its wait on the websocket when a
    stdin chunk is there or the consumer has left."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stdin: AsyncIterable[bytes] | None) -> None:
        self._loop = loop
        self._stdin = None if stdin is None else aiter(stdin)
        self.input_failure: Exception | None = None  # what ``stdin`` raised, if it did
        self._stdout: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: the worker ended
        self._room = threading.Semaphore(STDOUT_FRAMES_AHEAD)
        self._abandoned = threading.Event()
        self._wake_receiver, self._wake_sender = socket.socketpair()
        self._wake_receiver.setblocking(False)
        self._wake_sender.setblocking(False)

    @property
    def has_stdin(self) -> bool:
        return self._stdin is not None

    # -- on the event loop

    async def next_stdout(self) -> bytes | None:
        """The next stdout chunk; None once the worker has ended (its outcome is its task's)."""
        chunk = await self._stdout.get()
        if chunk is not None:
            self._room.release()
        return chunk

    def abandon(self) -> None:
        """The consumer has left: the worker stops wherever it waits (for room, or for the
        server), and closes the stream."""
        self._abandoned.set()
        self._room.release()
        self._wake()

    async def _next_stdin(self) -> bytes | None:
        assert self._stdin is not None  # asked for only when there is stdin
        try:
            return await anext(self._stdin, None)
        except Exception as error:
            self.input_failure = error
            raise

    def _wake(self) -> None:
        # Full: a wake-up is waiting already. Closed: the worker has ended.
        with contextlib.suppress(OSError):
            self._wake_sender.send(b"\0")

    # -- in the worker thread

    def stop_if_abandoned(self) -> None:
        if self._abandoned.is_set():
            raise KubeApiError(0, "Cancelled", "the stream was abandoned by its consumer")

    def hand_over(self, chunk: bytes) -> None:
        """Queue a stdout chunk for the consumer, once there is room for it."""
        # Looked at every second as well: a loop closed without closing the consumer's
        # generator would leave this thread waiting for ever (and the interpreter, at exit).
        while not self._room.acquire(timeout=1.0):
            if self._loop.is_closed():
                raise KubeApiError(0, "Cancelled", "the stream's event loop is gone")
        self.stop_if_abandoned()
        self._loop.call_soon_threadsafe(self._stdout.put_nowait, chunk)

    def request_stdin(self) -> concurrent.futures.Future[bytes | None]:
        """Ask the loop for the next stdin chunk (None at its end); ``wait`` returns once it is
        there. The input's error is the future's, and ``input_failure``."""
        pending = asyncio.run_coroutine_threadsafe(self._next_stdin(), self._loop)
        pending.add_done_callback(lambda _: self._wake())
        return pending

    def wait(self, connection: socket.socket, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the websocket's ``connection`` to have
        something to read (a frame, or its end), or a wake-up; whether it has."""
        if isinstance(connection, ssl.SSLSocket) and connection.pending():
            return True  # decrypted already, inside the TLS layer, where poll() cannot see it
        poll = select.poll()
        poll.register(connection, select.POLLIN)
        poll.register(self._wake_receiver, select.POLLIN)
        ready = {fd for fd, _ in poll.poll(timeout * 1000)}
        with contextlib.suppress(BlockingIOError):
            while self._wake_receiver.recv(4096):
                pass
        return connection.fileno() in ready

    def finish(self) -> None:
        """The worker's last word: ``next_stdout`` answers None from now on."""
        self._wake_receiver.close()
        self._wake_sender.close()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            self._loop.call_soon_threadsafe(self._stdout.put_nowait, None)


def pump_exec_stream(ws: Any, bridge: _ExecBridge, idle_timeout: float) -> None:
    """A streaming exec's worker, on the client's websocket ``ws``: frames are read one at a
    time, stdout handed to the consumer as each comes, and stdin sent as the loop gives it,
    until the server closes the stream; then the command's exit status decides.

    The frames are read here rather than with ``WSClient.update``, which takes every frame
    already there into its buffers, and a copy of all output besides (``stream()`` gives no
    way to turn that off): with a server faster than the consumer, memory would grow without
    bound. Read here, each frame's payload is the bytes as sent (``WSClient``'s ``binary``
    only changes how ``update`` decodes them).

    ``idle_timeout`` bounds every wait on the server alone: a send it does not take, a frame
    it leaves half sent, a silence once stdin is done. Waiting for our own side (the consumer
    to take stdout, the input to give the next chunk) does not count."""
    if bridge.has_stdin and ws.subprotocol != V5_CHANNEL_PROTOCOL:
        # Only v5 can say "end of input", which the commands fed stdin (a database load, a
        # tar extraction) need to finish; told apart here, before a byte of stdin is sent.
        raise KubeApiError(
            400,
            "BadRequest",
            f"the API server speaks {ws.subprotocol or 'an exec protocol'} only: feeding a "
            f"command its input needs {V5_CHANNEL_PROTOCOL} (Kubernetes 1.30 or later)",
        )
    connection = ws.sock  # websocket-client's WebSocket, read frame by frame
    connection.settimeout(idle_timeout)
    stderr_tail = b""
    status = b""
    pending = bridge.request_stdin() if bridge.has_stdin else None
    heard = time.monotonic()
    try:
        while True:
            bridge.stop_if_abandoned()
            stdin_ready = pending is not None and pending.done()
            # Stdin and the consumer's leaving wake the wait up: its timeout only has the idle
            # clock looked at.
            if bridge.wait(connection.sock, 0.0 if stdin_ready else min(1.0, idle_timeout)):
                opcode, frame = connection.recv_data_frame(True)
                if opcode == ABNF.OPCODE_CLOSE:
                    break
                if opcode in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) and frame.data:
                    channel, data = frame.data[0], frame.data[1:]
                    if channel == STDOUT_CHANNEL and data:
                        bridge.hand_over(data)
                    elif channel == STDERR_CHANNEL:
                        stderr_tail = (stderr_tail + data)[-STDERR_TAIL_BYTES:]
                    elif channel == ERROR_CHANNEL:
                        status += data
                heard = time.monotonic()
            elif pending is None and time.monotonic() - heard > idle_timeout:
                raise KubeApiError(
                    0, "Timeout", f"the command's stream was silent for {idle_timeout:g}s"
                )
            if stdin_ready:
                assert pending is not None  # stdin_ready says so
                chunk = pending.result()  # raises the input's error: the stream is abandoned
                if chunk is None:
                    ws.close_channel(STDIN_CHANNEL)
                    pending = None
                else:
                    for start in range(0, len(chunk), STDIN_FRAME_BYTES):
                        # Exactly bytes (not a bytearray or a view): the client sends a binary
                        # frame only for type(data) == bytes.
                        ws.write_stdin(bytes(chunk[start : start + STDIN_FRAME_BYTES]))
                    pending = bridge.request_stdin()
                heard = time.monotonic()
    except websocket.WebSocketTimeoutException:
        raise KubeApiError(
            0, "Timeout", f"the API server took or sent nothing for {idle_timeout:g}s"
        ) from None
    finally:
        if pending is not None:
            pending.cancel()
    status_text = status.decode("utf-8", "replace")
    if not status_text.strip():
        # v4 and v5 always send it, Success included: without it the stream was cut short.
        raise KubeApiError(0, "StreamLost", "the exec stream ended without the command's status")
    exit_code = exit_code_of(status_text)
    if exit_code:
        raise CommandFailed(exit_code, stderr_tail.decode("utf-8", "replace").strip())


def exit_code_of(status_text: str, stderr: str = "") -> int:
    """The exit code in an exec's error channel: a Status object, "Success" or a
    NonZeroExitCode failure carrying the code as a cause; any other failure (the command
    could not be started) counts as 126, the shell's "cannot execute"."""
    if not status_text.strip():
        return 0  # the stream closed without a status: older servers say nothing on success
    status = yaml.safe_load(status_text)
    if not isinstance(status, dict) or status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", ""))
            except ValueError:
                break
    return 126


def translate_api_exception(error: ApiException) -> KubeApiError:
    """Our error from the client's: the server's status and its own message (the response
    body's ``message``), never the request, which may carry Secret data."""
    message = error.reason or "no reason given"
    if error.body:
        try:
            body = json.loads(error.body)
        except (ValueError, TypeError):
            body = None
        if isinstance(body, dict) and body.get("message"):
            message = str(body["message"])
    retry_after: float | None = None
    headers = error.headers or {}
    if headers.get("Retry-After"):
        try:
            retry_after = float(headers["Retry-After"])
        except ValueError:
            retry_after = None
    return KubeApiError(
        int(error.status or 0), str(error.reason or "Error"), message[:500], retry_after
    )


# websocket-client's message for a refused upgrade, which the client hands on as the reason
# of an ApiException(status=0): "Handshake status 403 Forbidden -+-+- {headers} -+-+- body".
_HANDSHAKE_REFUSED = re.compile(r"^Handshake status (\d{3})(?: ([^\n]*?))? -\+-\+- ", re.DOTALL)
_HANDSHAKE_SEPARATOR = " -+-+- "


def translate_exec_refusal(error: ApiException) -> KubeApiError:
    """Our error from a failed exec upgrade. The client reports every failure there as
    ``ApiException(status=0)`` (its ``websocket_call`` wraps them all), an answer of the API
    server as much as no answer: the status, its reason and the server's Status message are
    read back out of websocket-client's message, so an RBAC denial (403) is told from an
    unreachable server (status 0, transient). Retry-After comes from the handshake's own error
    (the ApiException's context), where the client kept it."""
    reason = str(error.reason or "")
    refused = _HANDSHAKE_REFUSED.match(reason)
    if error.status or refused is None:
        return translate_api_exception(error)
    body = reason.split(_HANDSHAKE_SEPARATOR, 2)[-1]
    headers: dict[str, str] = {}
    cause = error.__context__
    if isinstance(cause, websocket.WebSocketBadStatusException) and cause.resp_headers:
        # websocket-client keeps header names lower-cased.
        headers = {str(k).title(): str(v) for k, v in cause.resp_headers.items()}
    code, phrase = int(refused.group(1)), refused.group(2)
    if not phrase or phrase == "None":  # websocket-client's word for a status line without one
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
    answer = ApiException(status=code, reason=phrase)
    answer.body = None if body == "None" else body
    answer.headers = headers
    translated = translate_api_exception(answer)
    return KubeApiError(
        translated.status,
        translated.reason,
        f"exec refused at the websocket handshake: {translated.message}"[:500],
        translated.retry_after,
    )


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _decoded_values(data: Mapping[str, str] | None) -> list[str]:
    """The text of a Secret's base64 values, those that are text: what to scrub from errors."""
    values = []
    for value in (data or {}).values():
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            values.append(base64.b64decode(value).decode())
    return values


def _namespace(item: Any) -> Namespace:
    status = item.status
    conditions = tuple(
        condition.message or condition.reason or condition.type
        for condition in (getattr(status, "conditions", None) or [])
        if condition.status == "True"
    )
    return Namespace(
        name=item.metadata.name,
        labels=dict(item.metadata.labels or {}),
        phase=(status.phase if status else None) or "Active",
        conditions=conditions,
    )


def _workload(kind: str, item: Any) -> Workload:
    status = item.status
    problem = None
    for condition in getattr(status, "conditions", None) or []:
        failing = condition.type == "ReplicaFailure" and condition.status == "True"
        stalled = condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded"
        if failing or stalled:
            problem = condition.message or condition.reason
    replicas = item.spec.replicas
    return Workload(
        kind=kind,
        name=item.metadata.name,
        replicas=1 if replicas is None else replicas,
        ready_replicas=status.ready_replicas or 0,
        updated_replicas=status.updated_replicas or 0,
        generation=item.metadata.generation or 0,
        observed_generation=status.observed_generation or 0,
        problem=problem,
    )


def _pod(item: Any) -> Pod:
    status = item.status
    conditions = {c.type: c for c in (status.conditions or [])}
    ready = conditions.get("Ready")
    scheduled = conditions.get("PodScheduled")
    unschedulable = None
    if scheduled is not None and scheduled.status == "False":
        unschedulable = scheduled.message or scheduled.reason
    containers = tuple(
        ContainerState(
            name=c.name,
            ready=bool(c.ready),
            waiting_reason=c.state.waiting.reason if c.state and c.state.waiting else None,
            waiting_message=c.state.waiting.message if c.state and c.state.waiting else None,
            image=c.image,
        )
        for c in [*(status.init_container_statuses or []), *(status.container_statuses or [])]
    )
    return Pod(
        name=item.metadata.name,
        labels=dict(item.metadata.labels or {}),
        phase=status.phase or "Unknown",
        ready=ready is not None and ready.status == "True",
        deleting=item.metadata.deletion_timestamp is not None,
        containers=containers,
        unschedulable=unschedulable,
    )
