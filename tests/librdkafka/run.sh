#!/usr/bin/env bash
# librdkafka's own integration tests against a real Sediment broker.
#
#     bash tests/librdkafka/run.sh [NNNN ...]      (default: every test in tests.txt)
#
# 1. librdkafka's source comes from crates.io: the `rdkafka-sys` crate carries the whole
#    librdkafka tree, tests/ included. It is fetched with `cargo vendor` into
#    .cache/librdkafka (the version is pinned below), then the library and the suite's
#    `test-runner` are built there (once; later runs reuse the build).
# 2. One broker ($SEDIMENT_BIN, default target/debug/sediment) is started with the suite's
#    default scenario (4 partitions per auto-created topic) on free loopback ports.
# 3. Each listed test runs alone, in quick mode, with a timeout; every one must pass. A test
#    left out of tests.txt is listed there with its reason.
# Exits non-zero if any listed test fails.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/tests/librdkafka"
RDKAFKA_SYS_VERSION="4.10.0"   # rdkafka-sys 4.10.0+2.12.1 holds librdkafka 2.12.1
CACHE="$REPO/.cache/librdkafka"
SRC="$CACHE/vendor/rdkafka-sys-$RDKAFKA_SYS_VERSION+2.12.1/librdkafka"
PER_TEST_TIMEOUT="${LIBRDKAFKA_TEST_TIMEOUT:-120}"
SEDIMENT_BIN="${SEDIMENT_BIN:-$REPO/target/debug/sediment}"

say() { printf '\n==> %s\n' "$*"; }

SUDO=()
[[ "$(id -u)" -ne 0 ]] && SUDO=(sudo)
missing=()
for pkg in zlib1g-dev libssl-dev libzstd-dev liblz4-dev libsasl2-dev rapidjson-dev g++ make; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ------------------------------------------------------------------ source and build
if [[ ! -x "$SRC/configure" ]]; then
  say "fetching librdkafka (rdkafka-sys $RDKAFKA_SYS_VERSION) with cargo vendor"
  mkdir -p "$CACHE/fetch/src"
  cat >"$CACHE/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-librdkafka"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka-sys = { version = "=$RDKAFKA_SYS_VERSION", default-features = false }

[workspace]
TOML
  echo 'fn main() {}' >"$CACHE/fetch/src/main.rs"
  (cd "$CACHE/fetch" && cargo vendor --versioned-dirs -q "$CACHE/vendor" >/dev/null)
fi
# The build is redone when what it was configured with changes (RapidJSON enables the tests
# that check statistics JSON).
BUILD_STAMP="$CACHE/build.stamp"
BUILD_WITH="librdkafka-2.12.1 --disable-gssapi rapidjson"
if [[ ! -x "$SRC/tests/test-runner" || "$(cat "$BUILD_STAMP" 2>/dev/null)" != "$BUILD_WITH" ]]; then
  say "building librdkafka and its test-runner (a few minutes)"
  (cd "$SRC" && ./configure --disable-gssapi >"$CACHE/configure.log" 2>&1 \
     || { tail -30 "$CACHE/configure.log"; exit 1; })
  (cd "$SRC" && make -j"$(nproc)" libs >"$CACHE/make.log" 2>&1 || { tail -30 "$CACHE/make.log"; exit 1; })
  (cd "$SRC/tests" && make -j"$(nproc)" build >"$CACHE/tests-build.log" 2>&1 \
     || { tail -30 "$CACHE/tests-build.log"; exit 1; })
  echo "$BUILD_WITH" >"$BUILD_STAMP"
fi

# ------------------------------------------------------------------------- the broker
WORK="$(mktemp -d)"
PORTS=($(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))'))
KAFKA_PORT=${PORTS[0]}
HTTP_PORT=${PORTS[1]}
( exec "$SEDIMENT_BIN" serve --data-dir "$WORK/data" --kafka-addr "127.0.0.1:$KAFKA_PORT" \
    --http-addr "127.0.0.1:$HTTP_PORT" --num-partitions 4 ) \
  >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
cleanup() { kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 150); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1 && break
  kill -0 "$BROKER_PID" 2>/dev/null || { tail -30 "$WORK/broker.log"; exit 1; }
  sleep 0.2
done

cat >"$SRC/tests/test.conf" <<CONF
metadata.broker.list=127.0.0.1:$KAFKA_PORT
test.topic.random=true
CONF

# -------------------------------------------------------------------------- the tests
if (($#)); then
  TESTS=("$@")
else
  mapfile -t TESTS < <(grep -E '^[0-9]{4}' "$HERE/tests.txt" | cut -d' ' -f1)
fi
say "librdkafka $(basename "$(dirname "$SRC")") tests against $SEDIMENT_BIN: ${#TESTS[@]} tests"
passed=0
failed=()
export LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp"
for t in "${TESTS[@]}"; do
  log="$WORK/test-$t.log"
  start=$SECONDS
  if (cd "$SRC/tests" && TESTS=$t timeout "$PER_TEST_TIMEOUT" ./test-runner -Q) >"$log" 2>&1; then
    printf '  %s passed (%ss)\n' "$t" $((SECONDS - start))
    passed=$((passed + 1))
  else
    printf '  %s FAILED (%ss); last lines:\n' "$t" $((SECONDS - start))
    tail -15 "$log" | sed 's/^/      /'
    failed+=("$t")
  fi
  kill -0 "$BROKER_PID" 2>/dev/null || { echo "the broker died"; tail -40 "$WORK/broker.log"; exit 1; }
done
echo "librdkafka: ${passed} passed, ${#failed[@]} failed"
if ((${#failed[@]})); then
  echo "failed: ${failed[*]} (broker log: $WORK/broker.log)" >&2
  exit 1
fi
rm -rf "$WORK"
