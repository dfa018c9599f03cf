"""A loopback HTTP server answering the few Kubernetes REST paths ``ClientKubeApi`` calls,
with the JSON shapes the API server sends, so the real official client can be exercised
end to end (its own HTTP, its own deserialisation) without a cluster. Exec is served over
WebSocket (uvicorn speaks it with wsproto) in the channel protocol the API server uses:
refused at the upgrade with a status, or accepted and run as ``exec_run`` says."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

TIME = "2026-11-01T10:00:00Z"
V5_CHANNEL_PROTOCOL = "v5.channel.k8s.io"
V4_CHANNEL_PROTOCOL = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR = 0, 1, 2, 3  # the channels' numbers, each frame's first byte
CLOSE = 255  # v5: the frame [CLOSE, channel] closes that channel
SUCCESS = '{"metadata":{},"status":"Success"}'


def exited(code: int) -> str:
    """The status the API server sends for a command that exited with ``code`` (not 0)."""
    return json.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    )


def status(code: int, reason: str, message: str) -> JSONResponse:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return JSONResponse(body, code)


@dataclass
class ExecRun:
    """What an accepted exec does. Asked for stdin, it reads it first, until the client closes
    the channel (v5) or leaves. Then ``stdout`` on its channel, in frames of ``frame_bytes``
    (0: one frame), ``stderr`` on its, the command's status on the error channel (none when
    ``status`` is empty) and a close. With ``drop``, the connection is cut after ``stdout``,
    with neither (a node or a proxy in between gone mid-command); with ``hang``, it stays
    open after ``stdout`` and nothing more comes; with ``endless``, ``stdout`` is sent again
    and again, until the client leaves."""

    stdout: str | bytes = ""
    stderr: bytes = b""
    status: str = SUCCESS
    drop: bool = False
    frame_bytes: int = 0
    hang: bool = False
    endless: bool = False


@dataclass
class FakeApiServer:
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    role_bindings: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # The SelfSubjectAccessReviews asked, as sent.
    reviews: list[dict[str, Any]] = field(default_factory=list)
    # method, path, query parameters
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    # the Authorization header of each request, in the same order ("" without one)
    authorizations: list[str] = field(default_factory=list)
    throttle: int = 0  # the next requests answered 429 with Retry-After
    retry_after: str = "2"
    # Exec refused at the upgrade with this (status, reason, message), as the API server
    # refuses it (RBAC, a missing pod, an overloaded server); None: accepted, and run as
    # ``exec_run`` says.
    exec_refusal: tuple[int, str, str] | None = (403, "Forbidden", "exec is not served here")
    exec_run: ExecRun = field(default_factory=ExecRun)
    # False: the server speaks v4 only, which cannot close stdin (before Kubernetes 1.30).
    exec_v5: bool = True
    # What the execs got and did: each one's argv, the stdin bytes and frames received, whether
    # the client closed stdin, the stdout frames sent, and how each ended ("finished", or
    # "client left"), which ``exec_ended`` is set at.
    exec_commands: list[list[str]] = field(default_factory=list)
    exec_stdin: bytearray = field(default_factory=bytearray)
    exec_stdin_frames: int = 0
    exec_stdin_closed: bool = False
    exec_stdout_frames: int = 0
    exec_ends: list[str] = field(default_factory=list)
    exec_ended: asyncio.Event = field(default_factory=asyncio.Event)
    # The bodies of Secret replacements (PUT) as sent, accepted or not.
    secret_puts: list[dict[str, Any]] = field(default_factory=list)
    # Someone else writes a Secret right after each of our reads of it: its resourceVersion
    # moves on, so a replace carrying the one read conflicts (409).
    concurrent_secret_writes: bool = False
    # A replace refused with this (status, reason, message) after its checks pass: the API
    # server's validation or admission, whose message may quote the object.
    secret_put_refusal: tuple[int, str, str] | None = None
    # The WordPress pod listed: stuck pulling its image, or running and ready (to exec into).
    wordpress_ready: bool = False
    # The namespace's PersistentVolumeClaims, name -> phase ("Pending", "Bound").
    claims: dict[str, str] = field(default_factory=dict)
    # What each container's previous run logged, by "pod/container"; none: no previous run.
    previous_logs: dict[str, str] = field(default_factory=dict)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/namespaces", self.namespaces_route, methods=["GET", "POST"]),
                Route("/api/v1/namespaces/{name}", self.namespace, methods=["GET", "DELETE"]),
                Route("/api/v1/namespaces/{ns}/secrets", self.create_secret, methods=["POST"]),
                Route(
                    "/api/v1/namespaces/{ns}/secrets/{name}",
                    self.secret,
                    methods=["GET", "PUT"],
                ),
                Route(
                    "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
                    self.create_role_binding,
                    methods=["POST"],
                ),
                Route(
                    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                    self.review,
                    methods=["POST"],
                ),
                Route("/apis/apps/v1/namespaces/{ns}/deployments", self.deployments),
                Route("/apis/apps/v1/namespaces/{ns}/statefulsets", self.statefulsets),
                Route("/api/v1/namespaces/{ns}/pods", self.pods),
                Route("/api/v1/namespaces/{ns}/persistentvolumeclaims", self.claims_route),
                Route("/api/v1/namespaces/{ns}/pods/{name}/log", self.pod_log),
                Route("/api/v1/namespaces/{ns}/pods/{name}/exec", self.exec),
                WebSocketRoute("/api/v1/namespaces/{ns}/pods/{name}/exec", self.exec_websocket),
            ]
        )

    def _seen(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path, dict(request.query_params)))
        self.authorizations.append(request.headers.get("authorization", ""))
        if self.throttle:
            self.throttle -= 1
            response = status(429, "TooManyRequests", "the server has received too many requests")
            response.headers["Retry-After"] = self.retry_after
            return response
        return None

    def _namespace_json(self, name: str) -> dict[str, Any]:
        ns = self.namespaces[name]
        body: dict[str, Any] = {
            "kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "labels": ns["labels"], "creationTimestamp": TIME},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": ns["phase"]},
        }  # fmt: skip
        if ns["phase"] == "Terminating":
            body["status"]["conditions"] = [
                {"type": "NamespaceFinalizersRemaining", "status": "True",
                 "reason": "SomeFinalizersRemain", "lastTransitionTime": TIME,
                 "message": "Some content in the namespace has finalizers remaining: "
                            "kubernetes.io/pvc-protection in 1 resource instances"},
                {"type": "NamespaceDeletionDiscoveryFailure", "status": "False",
                 "reason": "ResourcesDiscovered", "lastTransitionTime": TIME,
                 "message": "All resources successfully discovered"},
            ]  # fmt: skip
        return body

    async def namespaces_route(self, request: Request) -> Response:
        if (refused := self._seen(request)) is not None:
            return refused
        if request.method == "POST":
            body = await request.json()
            name = body["metadata"]["name"]
            if name in self.namespaces:
                return status(409, "AlreadyExists", f'namespaces "{name}" already exists')
            labels = body["metadata"].get("labels") or {}
            self.namespaces[name] = {"labels": labels, "phase": "Active"}
            return JSONResponse(self._namespace_json(name), 201)
        selector = request.query_params.get("labelSelector", "")
        terms = [t.partition("=") for t in selector.split(",") if t]
        items = [
            self._namespace_json(name)
            for name, ns in self.namespaces.items()
            if all(k in ns["labels"] and (not v or ns["labels"][k] == v) for k, _, v in terms)
        ]
        return JSONResponse(
            {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": items}
        )

    async def namespace(self, request: Request) -> Response:
        if (refused := self._seen(request)) is not None:
            return refused
        name = request.path_params["name"]
        if name not in self.namespaces:
            return status(404, "NotFound", f'namespaces "{name}" not found')
        if request.method == "DELETE":
            self.namespaces[name]["phase"] = "Terminating"
        return JSONResponse(self._namespace_json(name))

    async def create_secret(self, request: Request) -> Response:
        if (refused := self._seen(request)) is not None:
            return refused
        ns = request.path_params["ns"]
        body = await request.json()
        name = body["metadata"]["name"]
        if (ns, name) in self.secrets:
            return status(409, "AlreadyExists", f'secrets "{name}" already exists')
        body["metadata"]["resourceVersion"] = "1"
        self.secrets[(ns, name)] = body
        return JSONResponse({**body, "kind": "Secret", "apiVersion": "v1"}, 201)

    def _secret_json(self, key: tuple[str, str]) -> dict[str, Any]:
        stored = self.secrets[key]
        data = {k: base64.b64encode(v.encode()).decode() for k, v in stored["stringData"].items()}
        return {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {
                "name": key[1],
                "namespace": key[0],
                "labels": stored["metadata"].get("labels") or {},
                "resourceVersion": stored["metadata"].get("resourceVersion", "1"),
            },
            "type": stored.get("type", "Opaque"),
            "data": data,
        }

    async def secret(self, request: Request) -> Response:
        """Read a Secret (its data base64-encoded), or replace it (PUT): with the
        resourceVersion it has now, else 409; stringData merged over data, as stored."""
        if (refused := self._seen(request)) is not None:
            return refused
        key = (request.path_params["ns"], request.path_params["name"])
        if key not in self.secrets:
            return status(404, "NotFound", f'secrets "{key[1]}" not found')
        stored = self.secrets[key]
        version = int(stored["metadata"].get("resourceVersion", "1"))
        if request.method == "GET":
            answer = self._secret_json(key)
            if self.concurrent_secret_writes:
                stored["metadata"]["resourceVersion"] = str(version + 1)
            return JSONResponse(answer)
        body = await request.json()
        self.secret_puts.append(body)
        if body["metadata"].get("resourceVersion") != str(version):
            return status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on secrets "{key[1]}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        if self.secret_put_refusal is not None:
            return status(*self.secret_put_refusal)
        data = {k: base64.b64decode(v).decode() for k, v in (body.get("data") or {}).items()}
        self.secrets[key] = {
            "metadata": {**body["metadata"], "resourceVersion": str(version + 1)},
            "type": body.get("type", "Opaque"),
            "stringData": {**data, **(body.get("stringData") or {})},
        }
        return JSONResponse(self._secret_json(key))

    async def create_role_binding(self, request: Request) -> Response:
        if (refused := self._seen(request)) is not None:
            return refused
        ns = request.path_params["ns"]
        body = await request.json()
        name = body["metadata"]["name"]
        if (ns, name) in self.role_bindings:
            return status(409, "AlreadyExists", f'rolebindings "{name}" already exists')
        self.role_bindings[(ns, name)] = body
        return JSONResponse(body, 201)

    async def review(self, request: Request) -> Response:
        """Allowed where a RoleBinding was made: the authorizer, caught up."""
        if (refused := self._seen(request)) is not None:
            return refused
        body = await request.json()
        self.reviews.append(body)
        namespace = body["spec"]["resourceAttributes"]["namespace"]
        allowed = any(ns == namespace for ns, _ in self.role_bindings)
        return JSONResponse({**body, "status": {"allowed": allowed}}, 201)

    async def deployments(self, request: Request) -> Response:
        if (refused := self._seen(request)) is not None:
            return refused
        item = {
            "metadata": {"name": "store-wordpress", "generation": 2},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "wp"}},
                     "template": {"metadata": {}, "spec": {"containers": []}}},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 0,
                       "conditions": [
                           {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                            "message": 'pods "store-wordpress-x" is forbidden: exceeded quota: '
                                       "store-quota"}]},
        }  # fmt: skip
        return JSONResponse(
            {"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {}, "items": [item]}
        )

    async def statefulsets(self, request: Request) -> Response:
        if (refused := self._seen(request)) is not None:
            return refused
        item = {
            "metadata": {"name": "store-mariadb", "generation": 1},
            "spec": {"replicas": 1, "serviceName": "store-mariadb",
                     "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {}, "spec": {"containers": []}}},
            "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
                       "updatedReplicas": 1},
        }  # fmt: skip
        return JSONResponse(
            {"kind": "StatefulSetList", "apiVersion": "apps/v1", "metadata": {}, "items": [item]}
        )

    async def pods(self, request: Request) -> Response:
        if (refused := self._seen(request)) is not None:
            return refused
        ready = self.wordpress_ready
        state: dict[str, Any] = {"running": {"startedAt": TIME}} if ready else {
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": 'Back-off pulling image "ghcr.io/woostore/wp:bad"',
            }
        }  # fmt: skip
        # The MariaDB pod when asked for it by its labels, else the WordPress pod.
        if "component=mariadb" in request.query_params.get("labelSelector", ""):
            name, component = "store-mariadb-0", "mariadb"
        else:
            name, component = "store-wordpress-x", "wordpress"
        item = {
            "metadata": {"name": name, "labels": {"component": component}},
            "spec": {"containers": [{"name": "wordpress", "image": "ghcr.io/woostore/wp:bad"}]},
            "status": {
                "phase": "Running" if ready else "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": str(ready)}
                    | ({} if ready else {"reason": "ContainersNotReady"}),
                ],
                "containerStatuses": [
                    {"name": "wordpress", "ready": ready, "restartCount": 0,
                     "image": "ghcr.io/woostore/wp:bad", "imageID": "", "state": state},
                ],
            },
        }  # fmt: skip
        return JSONResponse(
            {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [item]}
        )

    async def claims_route(self, request: Request) -> Response:
        if (refused := self._seen(request)) is not None:
            return refused
        items = [
            {"metadata": {"name": name}, "spec": {}, "status": {"phase": phase}}
            for name, phase in self.claims.items()
        ]
        return JSONResponse(
            {"kind": "PersistentVolumeClaimList", "apiVersion": "v1", "metadata": {},
             "items": items}
        )  # fmt: skip

    async def pod_log(self, request: Request) -> Response:
        """A container's log as text, as the API server serves it; asked for a previous run
        that does not exist: 400, as the API server answers."""
        if (refused := self._seen(request)) is not None:
            return refused
        key = f"{request.path_params['name']}/{request.query_params.get('container')}"
        text = self.previous_logs.get(key)
        if request.query_params.get("previous") != "true" or text is None:
            return status(400, "BadRequest", f'previous terminated container "{key}" not found')
        lines = text.splitlines(keepends=True)
        tail = int(request.query_params.get("tailLines", len(lines)))
        return Response("".join(lines[-tail:]), media_type="text/plain")

    async def exec(self, request: Request) -> Response:
        """Exec without an upgrade (a plain GET): refused, as the API server would."""
        if (refused := self._seen(request)) is not None:
            return refused
        return status(400, "BadRequest", "Upgrade request required")

    async def exec_websocket(self, websocket: WebSocket) -> None:
        """The exec upgrade, seen (with its headers); then refused with ``exec_refusal`` (an
        HTTP answer instead of the upgrade, a Status in its body), or accepted on the newest
        channel protocol the client offers (v4 at most without ``exec_v5``) and run as
        ``exec_run`` says."""
        self.requests.append(("GET", websocket.url.path, dict(websocket.query_params)))
        self.authorizations.append(websocket.headers.get("authorization", ""))
        if self.exec_refusal is not None:
            code, reason, message = self.exec_refusal
            refusal = status(code, reason, message)
            if code == 429:
                refusal.headers["Retry-After"] = self.retry_after
            await websocket.send_denial_response(refusal)
            return
        offered = websocket.scope.get("subprotocols") or []
        v5 = self.exec_v5 and V5_CHANNEL_PROTOCOL in offered
        await websocket.accept(subprotocol=V5_CHANNEL_PROTOCOL if v5 else V4_CHANNEL_PROTOCOL)
        self.exec_commands.append(websocket.query_params.getlist("command"))
        try:
            if websocket.query_params.get("stdin") == "true":
                await self._read_stdin(websocket)
            await self._run(websocket, self.exec_run)
            self.exec_ends.append("finished")
        except WebSocketDisconnect:
            self.exec_ends.append("client left")
        finally:
            self.exec_ended.set()

    async def _read_stdin(self, websocket: WebSocket) -> None:
        """Stdin, frame by frame, until the client closes the channel (v5) or leaves."""
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            # WP-CLI's stdin is text: the client sends it in text frames.
            frame = message.get("bytes") or message.get("text", "").encode()
            if frame == bytes([CLOSE, STDIN]):
                self.exec_stdin_closed = True
                return
            if frame[:1] == bytes([STDIN]):
                self.exec_stdin += frame[1:]
                self.exec_stdin_frames += 1

    async def _run(self, websocket: WebSocket, run: ExecRun) -> None:
        stdout = run.stdout.encode() if isinstance(run.stdout, str) else run.stdout
        size = run.frame_bytes or max(len(stdout), 1)
        while True:
            for start in range(0, len(stdout), size):
                await websocket.send_bytes(bytes([STDOUT]) + stdout[start : start + size])
                self.exec_stdout_frames += 1
            if not run.endless:
                break
        if run.drop:
            return  # uvicorn closes the connection: no status, no close frame
        if run.hang:
            message = await websocket.receive()  # nothing comes but the client's leaving
            raise WebSocketDisconnect(message.get("code", 1000))
        if run.stderr:
            await websocket.send_bytes(bytes([STDERR]) + run.stderr)
        if run.status:
            await websocket.send_bytes(bytes([ERROR]) + run.status.encode())
        await websocket.close()
