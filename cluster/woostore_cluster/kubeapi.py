"""Our own narrow, typed view of the Kubernetes API: what the driver needs and nothing more.

The official client is untyped and answers with generated models; the driver works with the
small dataclasses here instead, through the ``KubeApi`` protocol, which tests replace with a
stateful fake. ``ClientKubeApi`` is the real implementation over the official client: every
call runs in a worker thread, so the event loop never blocks on the API server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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

# Seconds to connect and to wait for an answer, per API request: a request never hangs a
# worker thread for ever.
REQUEST_TIMEOUT = (10.0, 30.0)


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str]
    phase: str  # "Active" or "Terminating"
    # Messages of the namespace's true status conditions: why a deletion is stuck.
    conditions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workload:
    """A Deployment or a StatefulSet, as far as readiness goes."""

    kind: str
    name: str
    replicas: int
    ready_replicas: int
    updated_replicas: int
    generation: int = 1
    observed_generation: int = 1
    # Why the controller cannot make pods, e.g. a ReplicaFailure condition (quota exceeded).
    problem: str | None = None

    @property
    def ready(self) -> bool:
        return (
            self.observed_generation >= self.generation
            and self.ready_replicas >= self.replicas
            and self.updated_replicas >= self.replicas
        )

    def describe(self) -> str:
        text = f"{self.kind} {self.name} {self.ready_replicas}/{self.replicas} ready"
        return f"{text} ({self.problem})" if self.problem else text


@dataclass(frozen=True)
class ContainerState:
    name: str
    ready: bool
    waiting_reason: str | None = None
    waiting_message: str | None = None


@dataclass(frozen=True)
class Pod:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    phase: str = "Running"
    ready: bool = True
    deleting: bool = False
    containers: tuple[ContainerState, ...] = ()
    # The scheduler's reason when the pod cannot be placed (PodScheduled=False).
    unschedulable: str | None = None


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


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

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]  # untyped in the client

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
                    stdin=stdin is not None,
                    stdout=True,
                    stderr=True,
                    tty=False,
                    _preload_content=False,
                )
            except ApiException as error:
                raise translate_exec_refusal(error) from None
            try:
                return run_exec_stream(ws, stdin, timeout, cancelled)
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
