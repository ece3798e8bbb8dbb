#!/usr/bin/env bash
# k8s-ns.sh NAME up|down|run CMD...|env - a private copy of ../shared/k8s in its own network
# namespace, so it gets its own 127.0.0.1:6443 beside the default one (tests that restart the
# API server, or several test runs side by side). It shares the built binaries of the
# default cache ($HOME/.cache/local-k8s; build it first with shared/k8s/build.sh).
set -euo pipefail
name=${1:?usage: k8s-ns.sh NAME up|down|run CMD...|env}
verb=${2:?usage: k8s-ns.sh NAME up|down|run CMD...|env}
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kit=${SLUICE_SHARED:-$(cd "$here/../../.." && pwd)/shared}/k8s
base=${LOCAL_K8S_BASE:-$HOME/.cache/local-k8s}
home=$HOME/.cache/local-k8s-$name
ns=sluice-$name

in_ns() { ip netns exec "$ns" env LOCAL_K8S_HOME="$home" KUBECONFIG="$home/kubeconfig" "$@"; }

case $verb in
  up)
    [[ -x $base/bin/kube-apiserver ]] || bash "$kit/build.sh" >&2
    ip netns list | grep -qw "$ns" || { ip netns add "$ns"; ip netns exec "$ns" ip link set lo up; }
    mkdir -p "$home"
    for d in bin venv; do [[ -e $home/$d ]] || ln -s "$base/$d" "$home/$d"; done
    for d in pki kubeconfigs; do [[ -e $home/$d ]] || cp -a "$base/$d" "$home/$d"; done
    cp "$base/VERSIONS" "$home/VERSIONS" 2>/dev/null || true
    [[ -e $home/kubeconfig ]] || cp "$base/kubeconfig" "$home/kubeconfig" 2>/dev/null || true
    in_ns env FRESH="${FRESH:-1}" bash "$kit/up.sh" >/dev/null
    echo "cluster $name up: run commands with $0 $name run CMD..." >&2
    ;;
  down)
    in_ns bash "$kit/down.sh" >&2 || true
    ip netns del "$ns" 2>/dev/null || true
    ;;
  run)
    in_ns env SLUICE_E2E_KUBECONFIG="$home/kubeconfig" SLUICE_E2E_REQUIRED=1 "$@"
    ;;
  env)
    echo "export KUBECONFIG=$home/kubeconfig SLUICE_E2E_KUBECONFIG=$home/kubeconfig"
    ;;
  *) echo "unknown verb $verb" >&2; exit 2 ;;
esac
