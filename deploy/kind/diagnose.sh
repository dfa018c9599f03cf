#!/usr/bin/env bash
# What to look at when `make cluster-up` or the real-cluster suite fails on kind: the pinned
# versions first (docs/kubernetes.md, "When the workflow fails"), then the cluster's state,
# each part in a group of its own when run in GitHub Actions (.github/workflows/images.yml
# runs it on failure). Read-only; safe to run at any time.
#
#   deploy/kind/diagnose.sh            versions, then the cluster
#   deploy/kind/diagnose.sh versions   the pinned versions and the tools' versions only
#
#   CLUSTER_NAME   kind cluster name (default woostore)
set -uo pipefail # no -e: show everything that can be shown, whatever fails on the way

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

CONTEXT="kind-${CLUSTER_NAME:-woostore}"
kubectl() { command kubectl --context "$CONTEXT" "$@"; }
helm() { command helm --kube-context "$CONTEXT" "$@"; }

group() {
    if [ -n "${GITHUB_ACTIONS:-}" ]; then echo "::group::$*"; else echo "==> $*"; fi
}
endgroup() {
    if [ -n "${GITHUB_ACTIONS:-}" ]; then echo "::endgroup::"; fi
}

versions() {
    group "pinned versions (check these first when a build or an install fails)"
    grep -E '^ARG (WORDPRESS_IMAGE|WOOCOMMERCE_VERSION|WP_CLI_VERSION)=' deploy/images/wordpress/Dockerfile |
        awk '!seen[$0]++' # WOOCOMMERCE_VERSION is declared in both stages
    grep -E '^(TRAEFIK_CHART_VERSION|WORDPRESS_IMAGE)=' deploy/kind/cluster-up.sh
    grep -E 'image: kindest/node:' deploy/kind/cluster.yaml
    grep -E '^ARG PYTHON=|ghcr.io/astral-sh/uv:' deploy/images/services.Dockerfile
    endgroup
    group "tools"
    for tool in docker kind kubectl helm; do
        printf '%s: ' "$tool"
        case "$tool" in
            docker) command docker version --format '{{.Server.Version}}' 2>&1 ;;
            kind) command kind version 2>&1 ;;
            kubectl) command kubectl version --client 2>&1 | head -1 ;;
            helm) command helm version --short 2>&1 ;;
        esac
    done
    endgroup
}

cluster() {
    group "nodes and pods"
    kubectl get nodes -o wide
    kubectl get pods --all-namespaces -o wide
    endgroup

    group "pods that are not running and ready"
    kubectl get pods --all-namespaces --no-headers \
        -o custom-columns='NS:.metadata.namespace,NAME:.metadata.name,READY:.status.containerStatuses[*].ready,PHASE:.status.phase' |
        awk '$4 != "Succeeded" && ($4 != "Running" || $3 ~ /false/) { print $1, $2 }' |
        while read -r namespace pod; do
            kubectl -n "$namespace" describe pod "$pod" | tail -40
        done
    endgroup

    group "recent events"
    kubectl get events --all-namespaces --sort-by=.lastTimestamp | tail -80
    endgroup

    group "helm releases"
    helm list --all-namespaces --all
    endgroup

    for namespace in traefik woostore $(kubectl get namespaces -o name | sed -n 's|^namespace/\(store-.*\)|\1|p'); do
        group "logs in $namespace"
        for pod in $(kubectl -n "$namespace" get pods -o name); do
            echo "--- $pod"
            kubectl -n "$namespace" logs "$pod" --all-containers --tail=100 2>&1
            kubectl -n "$namespace" logs "$pod" --all-containers --previous --tail=50 2>/dev/null |
                sed 's/^/(previous) /'
        done
        endgroup
    done
}

versions
if [ "${1:-}" != versions ]; then
    cluster
fi
