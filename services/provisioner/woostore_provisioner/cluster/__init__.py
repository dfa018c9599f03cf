"""The cluster seam: the provisioner talks to Kubernetes only through ``Cluster``."""

from woostore_provisioner.cluster.base import (
    Cluster,
    ClusterError,
    PermanentClusterError,
    Release,
    StorefrontCheck,
    TransientClusterError,
    WpResult,
)

__all__ = [
    "Cluster",
    "ClusterError",
    "PermanentClusterError",
    "Release",
    "StorefrontCheck",
    "TransientClusterError",
    "WpResult",
]
