"""The cluster seam: the provisioner and the reaper reach Kubernetes only through ``Cluster``."""

import shutil

from woostore_cluster.base import (
    BIND_SECONDS,
    DEFAULT_INSTALLATION,
    INSTALLATION_LABEL,
    MANAGED_BY,
    STORE_ID_LABEL,
    Cluster,
    ClusterError,
    PermanentClusterError,
    Release,
    ReleaseRevision,
    StoreAccess,
    StorefrontCheck,
    TransientClusterError,
    WpResult,
    store_access,
)
from woostore_cluster.releases import install_seconds, rollback_seconds, uninstall_seconds
from woostore_cluster.traced import each_call, traced
from woostore_shared.settings import ClusterMode, Settings

__all__ = [
    "BIND_SECONDS",
    "DEFAULT_INSTALLATION",
    "INSTALLATION_LABEL",
    "MANAGED_BY",
    "STORE_ID_LABEL",
    "Cluster",
    "ClusterError",
    "PermanentClusterError",
    "Release",
    "ReleaseRevision",
    "StoreAccess",
    "StorefrontCheck",
    "TransientClusterError",
    "WpResult",
    "connect_cluster",
    "each_call",
    "install_seconds",
    "rollback_seconds",
    "store_access",
    "traced",
    "uninstall_seconds",
]


def connect_cluster(settings: Settings) -> Cluster:
    """The cluster the settings name: Kubernetes when a kubeconfig is given, else simulated.
    Either needs helm: without it every store would fail at its first release, after its
    retries, so the service refuses to start instead."""
    if shutil.which(settings.helm_binary) is None:
        raise SystemExit(
            f"WOOSTORE_HELM_BINARY={settings.helm_binary}: no such program (make tools installs "
            "helm into .tools/bin; the simulated cluster renders stores' charts with it too)"
        )
    if settings.cluster_mode is ClusterMode.KUBERNETES:
        from woostore_cluster.kubernetes import connect_kubernetes

        return connect_kubernetes(settings)
    from woostore_cluster.simulated import SimulatedCluster

    return SimulatedCluster(
        settings.data_dir / "simcluster",
        helm_binary=settings.helm_binary,
        time_scale=settings.sim_time_scale,
        faults=settings.sim_faults,
        installation=settings.installation,
        store_access=store_access(settings),
    )
