#!/usr/bin/env bash
# make e2e-kind: a kind cluster, the image built and loaded, the chart installed (watching
# one smoke namespace, so that it does not compete with the e2e tests' own operators),
# a smoke Rollout through it, the e2e suite, and the cluster deleted whatever happened.
# Needs docker, kind and kubectl; the chart is installed with the venv's Helm engine.
set -euo pipefail
cluster=${KIND_CLUSTER:-sluice-e2e}
image=${IMAGE:-sluice:e2e}
bin=${BIN:-.venv/bin}
kubeconfig=$(mktemp)
trap 'kind delete cluster --name "$cluster" >/dev/null 2>&1 || true; rm -f "$kubeconfig"' EXIT

kind create cluster --name "$cluster" --wait 180s --kubeconfig "$kubeconfig"
export KUBECONFIG=$kubeconfig
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"
kubectl apply --server-side -f charts/sluice/crds/
kubectl create namespace sluice-system
kubectl create namespace sluice-smoke
"$bin/python" - "$image" <<'PY'
import os, sys
import helm_python
repository, tag = sys.argv[1].rsplit(":", 1)
values = {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
          "watchNamespaces": ["sluice-smoke"]}
with helm_python.Config(kubeconfig_path=os.environ["KUBECONFIG"], namespace="sluice-system") as c:
    print(c.install("charts/sluice", "sluice", values, namespace="sluice-system",
                    wait="watcher", timeout=300)["status"])
PY
kubectl -n sluice-system rollout status deploy/sluice --timeout=180s
holder=$(kubectl -n sluice-system get lease sluice-leader -o jsonpath='{.spec.holderIdentity}')
echo "leader: $holder"
kubectl -n sluice-smoke apply -f examples/rollout-basic.yaml
kubectl -n sluice-smoke wait --for=condition=Healthy rollout/web --timeout=300s
# The e2e suite installs the routers' CRDs from $SLUICE_SHARED/crds (here, the local control
# plane's kit has them). On a plain checkout, take them from their own repositories at the
# versions that kit pins (shared/crds/README.md), unedited: a current API server takes them.
if [[ -z ${SLUICE_SHARED:-} && ! -d ../shared/crds ]]; then
  shared=$(mktemp -d)
  trap 'kind delete cluster --name "$cluster" >/dev/null 2>&1 || true; rm -rf "$kubeconfig" "$shared"' EXIT
  take() { # repo ref path dest
    local src
    src=$(mktemp -d)
    git clone -q --filter=blob:none --no-checkout "https://github.com/$1.git" "$src"
    git -C "$src" checkout -q "$2" -- "$3"
    mkdir -p "$shared/crds/$4"
    cp -r "$src/$3"/. "$shared/crds/$4/" 2>/dev/null || cp "$src/$3" "$shared/crds/$4/"
    rm -rf "$src"
  }
  take kubernetes-sigs/gateway-api v1.6.1 config/crd/standard gateway-api
  take istio/api 1.30.3 kubernetes/customresourcedefinitions.gen.yaml istio
  take servicemeshinterface/smi-sdk-go a143f8bc96eccdf5fc8a66d0c1622591104c77e0 crds/split.yaml smi
  export SLUICE_SHARED=$shared
fi
SLUICE_E2E_KUBECONFIG=$kubeconfig SLUICE_E2E_REQUIRED=1 "$bin/pytest" tests/e2e -q
