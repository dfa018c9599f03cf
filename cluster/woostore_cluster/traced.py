"""Every call through the cluster seam as a span of the trace under way (tracing.py):
``cluster install_release``, ``cluster wp wc product create`` (WP-CLI's command words, never
its values), each with the store's namespace. From a store's trace, its slowest cluster call.

:func:`each_call` wraps every call of a cluster so; the provisioner's lease fence wraps them
with it too."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, cast

from opentelemetry import trace

from woostore_cluster.base import Cluster

_TRACER = trace.get_tracer("woostore.cluster")


Wrap = Callable[[str, Callable[..., Any]], Callable[..., Any]]


class _EachCall:
    def __init__(self, inner: Cluster, wrap: Wrap) -> None:
        self._inner = inner
        self._wrap = wrap

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute  # streams (a dump, an archive): read by the step, not calls
        wrapped = self._wrap(name, attribute)
        setattr(self, name, wrapped)  # wrapped once: __getattr__ is not asked again
        return wrapped


def each_call(cluster: Cluster, wrap: Wrap) -> Cluster:
    """``cluster``, each of its calls (its coroutine methods) as ``wrap(name, call)`` made it."""
    return cast(Cluster, _EachCall(cluster, wrap))


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
    return each_call(cluster, _traced_call)
