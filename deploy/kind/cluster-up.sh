#!/usr/bin/env bash
# WooStore on a local kind cluster (make cluster-up): creates the cluster, installs Traefik,
# builds the service images and the WordPress image, loads them into the node, installs
# helm/platform with values-local.yaml and prints the dashboard URL. Safe to run again: each
# step converges (an existing cluster is reused, images are rebuilt, releases upgraded).
#
# Needs docker (with a running engine), kind, kubectl and helm (make tools installs helm).
#   CLUSTER_NAME   kind cluster name (default woostore)
#   CLUSTER_MODE   kubernetes (default: real stores in this cluster) or simulated
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

CLUSTER_NAME=${CLUSTER_NAME:-woostore}
CLUSTER_MODE=${CLUSTER_MODE:-kubernetes}
NAMESPACE=woostore
IMAGE_REPOSITORY=woostore/platform
IMAGE_TAG=dev
# helm/store's default WordPress image (wordpress.image in helm/store/values.yaml).
WORDPRESS_IMAGE=ghcr.io/woostore/wordpress-woocommerce:7.1.2-wc11.2.0
TRAEFIK_CHART_VERSION=42.4.3
SERVICES=(api provisioner reaper notifier)

fail() {
    echo "cluster-up: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || fail "'$1' is not installed; $2"
}

need docker "see https://docs.docker.com/engine/install/"
docker info >/dev/null 2>&1 || fail "docker is installed but no Docker engine answers (is it running?)"
need kind "see https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "see https://kubernetes.io/docs/tasks/tools/"
need helm "run 'make tools' (installs it into .tools/bin) or see https://helm.sh/docs/intro/install/"
case "$CLUSTER_MODE" in
    kubernetes | simulated) ;;
    *) fail "CLUSTER_MODE must be kubernetes or simulated, not '$CLUSTER_MODE'" ;;
esac

echo "==> kind cluster '$CLUSTER_NAME'"
if kind get clusters | grep -qx "$CLUSTER_NAME"; then
    echo "    exists, reused"
else
    kind create cluster --name "$CLUSTER_NAME" --config deploy/kind/cluster.yaml --wait 120s
fi
CONTEXT="kind-$CLUSTER_NAME"
kubectl() { command kubectl --context "$CONTEXT" "$@"; }
helm() { command helm --kube-context "$CONTEXT" "$@"; }

echo "==> CoreDNS: *.localhost resolves to Traefik inside the cluster"
# Browsers on the host reach http://<slug>.localhost/ through port 80; the provisioner,
# which checks each new store the same way, needs the name to lead to Traefik's Service.
corefile=$(kubectl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}')
if ! grep -q "woostore:" <<<"$corefile"; then
    RULE='    # woostore: stores at <slug>.localhost are served by Traefik
    rewrite name regex ^[^.]+[.]localhost[.]?$ traefik.traefik.svc.cluster.local answer auto' \
        awk '{ print } /^[[:space:]]*ready$/ { print ENVIRON["RULE"] }' <<<"$corefile" >"${TMPDIR:-/tmp}/woostore-corefile"
    grep -q "woostore:" "${TMPDIR:-/tmp}/woostore-corefile" || fail "CoreDNS's Corefile has no 'ready' line to add the rewrite after"
    kubectl -n kube-system create configmap coredns --from-file=Corefile="${TMPDIR:-/tmp}/woostore-corefile" \
        --dry-run=client -o yaml | kubectl apply -f -
    kubectl -n kube-system rollout restart deployment coredns
    kubectl -n kube-system rollout status deployment coredns --timeout 120s
fi

echo "==> Traefik (chart $TRAEFIK_CHART_VERSION)"
helm upgrade --install traefik traefik --repo https://traefik.github.io/charts \
    --version "$TRAEFIK_CHART_VERSION" --namespace traefik --create-namespace \
    --values deploy/kind/traefik-values.yaml --wait --timeout 5m

echo "==> images"
for service in "${SERVICES[@]}"; do
    docker build --file deploy/images/services.Dockerfile --target "$service" \
        --tag "$IMAGE_REPOSITORY:$service-$IMAGE_TAG" .
done
docker build --tag "$WORDPRESS_IMAGE" deploy/images/wordpress
for service in "${SERVICES[@]}"; do
    kind load docker-image --name "$CLUSTER_NAME" "$IMAGE_REPOSITORY:$service-$IMAGE_TAG"
done
kind load docker-image --name "$CLUSTER_NAME" "$WORDPRESS_IMAGE"

echo "==> WooStore (helm/platform, values-local.yaml, cluster.mode=$CLUSTER_MODE)"
# Every pod of the platform meets the restricted Pod Security Standard; enforce it.
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted
helm upgrade --install woostore helm/platform --namespace "$NAMESPACE" \
    --values helm/platform/values-local.yaml \
    --set-string image.repository="$IMAGE_REPOSITORY" --set-string image.tag="$IMAGE_TAG" \
    --set-string cluster.mode="$CLUSTER_MODE" \
    --wait --timeout 10m

token=$(kubectl -n "$NAMESPACE" get secret woostore-secrets -o jsonpath='{.data.admin-token}' | base64 -d)
cat <<DONE

WooStore is running on kind cluster '$CLUSTER_NAME' (stores: $CLUSTER_MODE).

  Dashboard:    http://localhost/
  Admin token:  $token
  Stores at:    http://<slug>.localhost/

  helm test woostore -n $NAMESPACE --logs     # the API is ready
  make cluster-down                          # delete the cluster
DONE
