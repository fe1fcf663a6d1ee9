#!/usr/bin/env bash
# Stops the LocalStack started by start.sh (by its recorded PID).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
D="${LOCALSTACK_DIR:-$REPO/.localstack}"
PORT="${LOCALSTACK_PORT:-4566}"
if [[ -f "$D/localstack-$PORT.pid" ]]; then
  pid=$(cat "$D/localstack-$PORT.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$D/localstack-$PORT.pid"
fi
# The per-port scratch directories are empty once it has stopped (start.sh makes them again);
# the log stays.
rmdir "$D/run-$PORT" "$D/fs-$PORT" 2>/dev/null || true
