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
SLUICE_E2E_KUBECONFIG=$kubeconfig SLUICE_E2E_REQUIRED=1 "$bin/pytest" tests/e2e -q
