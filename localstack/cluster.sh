#!/usr/bin/env bash
# A three-broker Sediment cluster on this machine: one etcd, LocalStack's S3, and brokers 1-3,
# all on 127.0.0.1 (no Docker).
#
#   localstack/cluster.sh start      # builds sediment if needed; prints the bootstrap list
#   localstack/cluster.sh stop
#
# Brokers listen on 127.0.0.1:9091-9093 (HTTP 9191-9193), etcd on 2379, LocalStack on 4566;
# everything lives under <repo>/.cluster (logs: .cluster/*.log). Needs etcd (apt
# etcd-server) and curl; LocalStack is installed by localstack/start.sh the first time.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
D="$REPO/.cluster"
BIN="${SEDIMENT_BIN:-$REPO/target/debug/sediment}"
ETCD="http://127.0.0.1:2379"

stop() {
  for f in "$D"/*.pid; do
    [[ -f "$f" ]] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  bash "$REPO/localstack/stop.sh" >/dev/null 2>&1 || true
  echo "cluster stopped"
}

start() {
  mkdir -p "$D"
  command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
  [[ -x "$BIN" ]] || (cd "$REPO" && cargo build --bin sediment)
  if ! curl -sf "$ETCD/health" >/dev/null 2>&1; then
    etcd --name sediment --data-dir "$D/etcd" --listen-client-urls "$ETCD" \
      --advertise-client-urls "$ETCD" --listen-peer-urls http://127.0.0.1:2380 \
      >"$D/etcd.log" 2>&1 &
    echo $! >"$D/etcd.pid"
    for _ in $(seq 50); do curl -sf "$ETCD/health" >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  endpoint="$(bash "$REPO/localstack/start.sh" sediment | tail -1)"
  export AWS_ENDPOINT_URL="$endpoint" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  for i in 1 2 3; do
    "$BIN" serve --broker-id "$i" --kafka-addr "127.0.0.1:909$i" --http-addr "127.0.0.1:919$i" \
      --data-dir "$D/broker$i" --etcd-endpoints "$ETCD" --object-store s3://sediment/cluster \
      >"$D/broker$i.log" 2>&1 &
    echo $! >"$D/broker$i.pid"
  done
  for i in 1 2 3; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:919$i/health" >/dev/null 2>&1 && break; sleep 0.2; done
    curl -sf "http://127.0.0.1:919$i/health" >/dev/null || { echo "broker $i did not start; see $D/broker$i.log" >&2; exit 1; }
  done
  echo "127.0.0.1:9091,127.0.0.1:9092,127.0.0.1:9093"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
