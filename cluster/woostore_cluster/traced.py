"""Every call through the cluster seam as a span of the trace under way (tracing.py):
``cluster install_release``, ``cluster wp wc product create`` (WP-CLI's command words, never
its values), each with the store's namespace. From a store's trace, its slowest cluster call."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, cast

from opentelemetry import trace

from woostore_cluster.base import Cluster

_TRACER = trace.get_tracer("woostore.cluster")


class _Traced:
    def __init__(self, inner: Cluster) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute  # streams (a dump, an archive) are spans of the step reading them
        traced_call = _traced_call(name, attribute)
        setattr(self, name, traced_call)  # wrapped once: __getattr__ is not asked again
        return traced_call


def _traced_call(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(call)

    @functools.wraps(call)
    async def in_a_span(*args: Any, **kwargs: Any) -> Any:
        given = signature.bind_partial(*args, **kwargs).arguments
        span_name = f"cluster {name}"
        if name == "wp":
            words = [word for word in given.get("args", ()) if not word.startswith("-")]
            span_name = f"cluster wp {' '.join(words[:3])}"
        namespace = given.get("namespace", getattr(given.get("release"), "namespace", None))
        attributes = {"woostore.namespace": namespace} if isinstance(namespace, str) else {}
        with _TRACER.start_as_current_span(span_name, attributes=attributes):
            return await call(*args, **kwargs)

    return in_a_span


def traced(cluster: Cluster) -> Cluster:
    """``cluster``, each of its calls a span."""
    return cast(Cluster, _Traced(cluster))
