#!/usr/bin/env bash
# faster-controllers.sh NAME [QPS] - restart the kube-controller-manager of the private
# control plane NAME (tests/tools/k8s-ns.sh) with a higher client rate limit.
# The kit starts it with client-go's defaults (20 requests/s, burst 30, per controller),
# which alone needs ~30 min to give 10,000 Deployments their ReplicaSets: a fleet's time to
# Healthy would measure that limit, not Sluice. Same flags, plus --kube-api-qps/-burst and
# more concurrent Deployment/ReplicaSet syncs (5 each by default: with ~1 s API calls on a
# busy machine, 5 syncs/s at most).
set -euo pipefail
name=${1:?usage: faster-controllers.sh NAME [QPS]}
qps=${2:-400}
home=$HOME/.cache/local-k8s-$name
pids=$home/run/pids
pid=$(awk '$1 == "kube-controller-manager" {print $2}' "$pids")
[[ -n $pid && -r /proc/$pid/cmdline ]] || { echo "no controller-manager for $name" >&2; exit 1; }
mapfile -d '' argv < "/proc/$pid/cmdline"
kept=()
for a in "${argv[@]}"; do [[ $a == --kube-api-* || $a == --concurrent-* ]] || kept+=("$a"); done
kill "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
ip netns exec "sluice-$name" setsid "${kept[@]}" --kube-api-qps="$qps" --kube-api-burst=$((qps * 2)) \
  --concurrent-deployment-syncs=50 --concurrent-replicaset-syncs=50 \
  >>"$home/run/logs/kube-controller-manager.log" 2>&1 < /dev/null &
new=$!
sed -i "s/^kube-controller-manager $pid\$/kube-controller-manager $new/" "$pids"
for _ in $(seq 1 100); do
  ip netns exec "sluice-$name" curl -fsSk --max-time 2 https://127.0.0.1:10257/healthz >/dev/null 2>&1 && {
    echo "controller-manager of $name restarted (pid $new) with --kube-api-qps=$qps" >&2; exit 0; }
  sleep 0.3
done
echo "controller-manager of $name did not come back" >&2; exit 1
