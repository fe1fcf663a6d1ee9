#!/usr/bin/env bash
# librdkafka's own integration tests against real Sediment brokers.
#
#     bash tests/librdkafka/run.sh [NNNN ...]             (default: every test in tests.txt)
#     bash tests/librdkafka/run.sh --cluster [NNNN ...]   (default: every test in tests-cluster.txt)
#
# 1. librdkafka's source comes from crates.io: the `rdkafka-sys` crate carries the whole
#    librdkafka tree, tests/ included. It is fetched with `cargo vendor` into
#    .cache/librdkafka (the version is pinned below), then the library and the suite's
#    `test-runner` are built there (once; later runs reuse the build).
# 2. One broker ($SEDIMENT_BIN, default target/debug/sediment) is started with the suite's
#    default scenario (4 partitions per auto-created topic) on free loopback ports.
#    With --cluster: a three-broker cluster instead (one etcd, Debian's etcd-server, and brokers
#    1-3 in cluster mode sharing a file:// object store, all on free loopback ports under one
#    temporary directory), one cluster per scenario the listed tests need, started the way the
#    scenario (tests/scenarios/*.json) describes its broker: 4 partitions and replication
#    factor 3 for created topics, auto-creation off for `noautocreate`. The bootstrap list
#    names all three brokers.
# 3. Each listed test runs in its own test-runner, in quick mode, with a timeout, two at a time
#    (LIBRDKAFKA_JOBS; topics and groups are random per test); every one must pass, and must
#    have run (test-runner exits 0 for a test it skips, e.g. one for another scenario, so its
#    summary must show the test PASSED). A test left out of a list is named there with its
#    reason.
# Exits non-zero if any listed test fails. Everything started is stopped on exit, failure
# included; the temporary directory (broker and test logs) is removed only when every test
# passed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/tests/librdkafka"
RDKAFKA_SYS_VERSION="4.10.0"   # rdkafka-sys 4.10.0+2.12.1 holds librdkafka 2.12.1
CACHE="$REPO/.cache/librdkafka"
SRC="$CACHE/vendor/rdkafka-sys-$RDKAFKA_SYS_VERSION+2.12.1/librdkafka"
PER_TEST_TIMEOUT="${LIBRDKAFKA_TEST_TIMEOUT:-120}"
SEDIMENT_BIN="${SEDIMENT_BIN:-$REPO/target/debug/sediment}"
CLUSTER=0
if [[ "${1:-}" == "--cluster" ]]; then
  CLUSTER=1
  shift
fi

say() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

SUDO=()
[[ "$(id -u)" -ne 0 ]] && SUDO=(sudo)
missing=()
for pkg in zlib1g-dev libssl-dev libzstd-dev liblz4-dev libsasl2-dev rapidjson-dev g++ make; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
((CLUSTER)) && ! command -v etcd >/dev/null 2>&1 && missing+=(etcd-server)
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

# ------------------------------------------------------------------------ the brokers
WORK="$(mktemp -d)"
BROKER_PIDS=()
ETCD_PID=
ETCD_DATA=
# Brokers first (SIGTERM: a cluster broker hands its partitions over through etcd, so etcd
# stays up until they are gone; SIGKILL after 20 s), then etcd.
stop_all() {
  local pid
  ((${#BROKER_PIDS[@]})) && kill "${BROKER_PIDS[@]}" 2>/dev/null || true
  for _ in $(seq 100); do
    local alive=0
    for pid in "${BROKER_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.2
  done
  for pid in "${BROKER_PIDS[@]}"; do
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  BROKER_PIDS=()
  if [[ -n "$ETCD_PID" ]]; then
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    ETCD_PID=
  fi
  [[ -n "$ETCD_DATA" ]] && rm -rf "$ETCD_DATA"
  ETCD_DATA=
}
trap stop_all EXIT
trap 'exit 130' INT TERM

free_ports() {
  python3 -c 'import socket, sys
s=[socket.socket() for _ in range(int(sys.argv[1]))]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))' "$1"
}

# start_broker NAME KAFKA_PORT HTTP_PORT [serve flags...]: starts it, waits for /health.
start_broker() {
  local name=$1 kport=$2 hport=$3
  shift 3
  ( exec "$SEDIMENT_BIN" serve --data-dir "$DIR/$name" --kafka-addr "127.0.0.1:$kport" \
      --http-addr "127.0.0.1:$hport" --num-partitions 4 "$@" ) >"$DIR/$name.log" 2>&1 &
  BROKER_PIDS+=($!)
  local pid=$!
  for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$hport/health" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$name exited:"; tail -30 "$DIR/$name.log"; exit 1; }
    sleep 0.2
  done
  echo "$name did not become healthy:"; tail -30 "$DIR/$name.log"; exit 1
}

# start_single: one broker in $DIR; sets BOOTSTRAP.
start_single() {
  local ports=($(free_ports 2))
  start_broker broker "${ports[0]}" "${ports[1]}"
  BOOTSTRAP="127.0.0.1:${ports[0]}"
}

# start_cluster AUTO_CREATE: etcd and brokers 1-3 in $DIR; sets BOOTSTRAP.
start_cluster() {
  local auto_create=$1
  local ports=($(free_ports 8))
  local etcd_url="http://127.0.0.1:${ports[0]}"
  # etcd's data on tmpfs when there is one: etcd fsyncs its WAL on every write, and with the
  # disk busy (a build beside the tests) one fsync took 2.2 s and etcd answered nothing for the
  # brokers' whole etcd request timeout (3 s): 0111's CreateTopics failed with "metadata store
  # unavailable" and every broker lost its lease. The metadata is thrown away after the run.
  if [[ -d /dev/shm && -w /dev/shm ]]; then
    ETCD_DATA="$(mktemp -d /dev/shm/sediment-librdkafka-etcd.XXXXXX)"
  else
    ETCD_DATA="$DIR/etcd"
  fi
  ( exec etcd --name it --data-dir "$ETCD_DATA" --listen-client-urls "$etcd_url" \
      --advertise-client-urls "$etcd_url" --listen-peer-urls "http://127.0.0.1:${ports[1]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${ports[1]}" \
      --initial-cluster "it=http://127.0.0.1:${ports[1]}" ) >"$DIR/etcd.log" 2>&1 &
  ETCD_PID=$!
  for _ in $(seq 100); do
    curl -sf "$etcd_url/health" 2>/dev/null | grep '"true"' >/dev/null && break
    kill -0 "$ETCD_PID" 2>/dev/null || { echo "etcd exited:"; tail -30 "$DIR/etcd.log"; exit 1; }
    sleep 0.2
  done
  curl -sf "$etcd_url/health" 2>/dev/null | grep '"true"' >/dev/null \
    || { echo "etcd did not become healthy:"; tail -30 "$DIR/etcd.log"; exit 1; }
  BOOTSTRAP=
  local i
  for i in 1 2 3; do
    start_broker "broker$i" "${ports[2 * i]}" "${ports[2 * i + 1]}" --broker-id "$i" \
      --etcd-endpoints "$etcd_url" --object-store "file://$DIR/objects" \
      --default-replication-factor 3 --auto-create-topics "$auto_create"
    BOOTSTRAP+="${BOOTSTRAP:+,}127.0.0.1:${ports[2 * i]}"
  done
  # Until every broker's Metadata lists all three (each registers in etcd on its own). The
  # status is read whole first: `grep -q` on the pipe could end it early, failing the pipe.
  for i in 1 2 3; do
    local status=
    for _ in $(seq 100); do
      status="$(SEDIMENT_BOOTSTRAP="127.0.0.1:${ports[2 * i]}" "$SEDIMENT_BIN" cluster status \
                2>&1)" && [[ "$status" == *": 3 broker(s)"* ]] && break
      sleep 0.2
    done
    if [[ "$status" != *": 3 broker(s)"* ]]; then
      echo "broker$i does not see three brokers: $status"
      tail -30 "$DIR/broker$i.log"
      exit 1
    fi
  done
}

# -------------------------------------------------------------------------- the tests
export LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp"
passed=0
failed=()

# How many tests run at once against the same brokers (topics and groups are random per test,
# so they do not see each other's). Two fit this machine's 2 vCPUs and halve the suite's time.
JOBS="${LIBRDKAFKA_JOBS:-2}"

# run_one SCENARIO NNNN: one test; writes "<ok> <seconds>" to $DIR/result-NNNN.
run_one() {
  local scenario=$1 t=$2
  local log="$DIR/test-$t.log" start=$SECONDS ok=0
  if (cd "$SRC/tests" && RDKAFKA_TEST_CONF="$DIR/test.conf" TEST_SCENARIO=$scenario TESTS=$t \
        timeout "$PER_TEST_TIMEOUT" ./test-runner -Q) >"$log" 2>&1; then
    # The summary has a row per test of that number; one must say PASSED (not SKIPPED).
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E "^\| ${t}_[^ ]* +\| +PASSED \|" >/dev/null && ok=1
  fi
  echo "$ok $((SECONDS - start))" >"$DIR/result-$t"
}

brokers_alive() {
  local pid
  for pid in "${BROKER_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && continue
    echo "a broker died (logs in $DIR):"
    for l in "$DIR"/broker*.log; do echo "--- $l"; tail -20 "$l"; done
    exit 1
  done
}

# run_tests SCENARIO NNNN...: against the brokers started in $DIR, at $BOOTSTRAP, $JOBS at a
# time; results are reported in list order.
run_tests() {
  local scenario=$1 t
  shift
  cat >"$DIR/test.conf" <<CONF
metadata.broker.list=$BOOTSTRAP
test.topic.random=true
CONF
  # Only the tests' own jobs are counted and waited for: the brokers are jobs of this shell too.
  local pids=() p alive
  for t in "$@"; do
    while ((${#pids[@]} >= JOBS)); do
      wait -n "${pids[@]}" || true
      alive=()
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
      pids=("${alive[@]}")
      brokers_alive
    done
    run_one "$scenario" "$t" &
    pids+=($!)
  done
  wait "${pids[@]}" 2>/dev/null || true
  brokers_alive
  for t in "$@"; do
    local ok=0 secs=?
    [[ -f "$DIR/result-$t" ]] && read -r ok secs <"$DIR/result-$t"
    if ((ok)); then
      printf '  %s passed (%ss)\n' "$t" "$secs"
      passed=$((passed + 1))
    else
      printf '  %s FAILED (%ss); last lines:\n' "$t" "$secs"
      tail -15 "$DIR/test-$t.log" | sed 's/^/      /'
      failed+=("$t")
    fi
  done
}

if ((CLUSTER)); then
  LIST="$HERE/tests-cluster.txt"
else
  LIST="$HERE/tests.txt"
fi
if (($#)); then
  TESTS=("$@")
else
  mapfile -t TESTS < <(grep -E '^[0-9]{4}' "$LIST" | cut -d' ' -f1)
fi
# The scenario of a test: its third column in the list (default: "default").
scenario_of() {
  local s
  s="$(awk -v t="$1" '$1 == t { print $3 }' "$LIST")"
  echo "${s:-default}"
}

if ((CLUSTER)); then
  say "librdkafka $(basename "$(dirname "$SRC")") tests against three $SEDIMENT_BIN brokers:" \
    "${#TESTS[@]} tests"
  mapfile -t SCENARIOS < <(for t in "${TESTS[@]}"; do scenario_of "$t"; done | sort -u)
  for scenario in "${SCENARIOS[@]}"; do
    group=()
    for t in "${TESTS[@]}"; do [[ "$(scenario_of "$t")" == "$scenario" ]] && group+=("$t"); done
    auto_create=true
    [[ "$scenario" == noautocreate ]] && auto_create=false
    DIR="$WORK/$scenario"
    mkdir -p "$DIR"
    start=$SECONDS
    start_cluster "$auto_create"
    echo "  scenario $scenario: etcd and 3 brokers (auto-create $auto_create) up in" \
      "$((SECONDS - start))s at $BOOTSTRAP"
    run_tests "$scenario" "${group[@]}"
    stop_all
  done
else
  say "librdkafka $(basename "$(dirname "$SRC")") tests against $SEDIMENT_BIN: ${#TESTS[@]} tests"
  DIR="$WORK"
  start_single
  run_tests default "${TESTS[@]}"
fi

echo "librdkafka: ${passed} passed, ${#failed[@]} failed"
if ((${#failed[@]})); then
  echo "failed: ${failed[*]} (broker logs and test logs: $WORK)" >&2
  exit 1
fi
rm -rf "$WORK"
