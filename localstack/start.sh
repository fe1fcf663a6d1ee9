#!/usr/bin/env bash
# Starts LocalStack (S3 only) as a plain process on 127.0.0.1, without Docker, and creates a
# bucket. Idempotent: installs LocalStack into a venv the first time.
#
#   localstack/start.sh [bucket]      # default bucket: sediment
#
# Environment: LOCALSTACK_DIR (state, venv, logs; default <repo>/.localstack),
# LOCALSTACK_PORT (default 4566). Prints the endpoint URL on success; stop with stop.sh.
# Point Sediment at it with:
#   AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
#   AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
#   sediment serve --object-store s3://sediment/archive
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
D="${LOCALSTACK_DIR:-$REPO/.localstack}"
PORT="${LOCALSTACK_PORT:-4566}"
BUCKET="${1:-sediment}"
ENDPOINT="http://127.0.0.1:$PORT"
mkdir -p "$D"

wait_for() { local t=$1; shift; local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do ((SECONDS >= end)) && return 1; sleep 0.2; done; }
healthy() { curl -sf "$ENDPOINT/_localstack/health" | grep -Eq '"s3": "(available|running)"'; }

if ! healthy; then
  if [[ ! -x "$D/venv/bin/python" ]] || ! "$D/venv/bin/python" -c 'import localstack' 2>/dev/null; then
    echo "localstack: installing localstack-core into $D/venv" >&2
    python3 -m venv "$D/venv"
    # Newer localstack-core needs Python 3.12+; these pins run on Debian 12's 3.11.
    "$D/venv/bin/pip" install -q --disable-pip-version-check \
      'localstack-core[base-runtime]==4.13.1' 'cbor2<6' 'pyopenssl<24.3' 'cryptography<44'
  fi
  mkdir -p "$D/tmp" "$D/run-$PORT" "$D/fs-$PORT"
  # Run from an empty directory; hypercorn binds only the address given (the default server
  # would bind every interface).
  ( cd "$D/run-$PORT" && exec env TMPDIR="$D/tmp" FILESYSTEM_ROOT="$D/fs-$PORT" \
      GATEWAY_SERVER=hypercorn GATEWAY_LISTEN="127.0.0.1:$PORT" SERVICES=s3 EAGER_SERVICE_LOADING=1 \
      PERSISTENCE=0 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 DNS_ADDRESS=0 \
      "$D/venv/bin/python" -m localstack.runtime.main ) >"$D/localstack-$PORT.log" 2>&1 &
  echo $! >"$D/localstack-$PORT.pid"
  if ! wait_for 90 healthy; then
    echo "localstack: not healthy after 90 s; log tail:" >&2
    tail -30 "$D/localstack-$PORT.log" >&2
    exit 1
  fi
fi
# LocalStack does not check request signatures, so a plain PUT creates the bucket.
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$ENDPOINT/$BUCKET")
if [[ $code != 200 && $code != 409 ]]; then
  echo "localstack: creating bucket $BUCKET answered HTTP $code" >&2
  exit 1
fi
echo "$ENDPOINT"
