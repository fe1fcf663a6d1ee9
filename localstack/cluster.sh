#!/usr/bin/env bash
# A three-broker Sediment cluster on this machine, as plain processes on 127.0.0.1 (no Docker):
# LocalStack's S3, a three-member etcd cluster (Debian's etcd-server) and brokers 1-3.
#
#   localstack/cluster.sh up             # start; returns once an acks=all write is accepted
#   localstack/cluster.sh status         # which processes run, and `sediment cluster status`
#   localstack/cluster.sh down [--wipe]  # stop; data is kept unless --wipe
#
# `start` and `stop` are the same as `up` and `down`.
#
# Default ports: Kafka 9091-9093, HTTP (/health, /ready, /metrics) 9191-9193, etcd clients
# 2379/22379/32379 (peers 2380/22380/32380), LocalStack 4566. Environment:
#   SEDIMENT_CLUSTER_DIR        data, logs and pid files (default <repo>/.cluster)
#   SEDIMENT_CLUSTER_PORT_BASE  B: Kafka B+1..B+3, HTTP B+11..B+13, etcd clients B+21, B+23,
#                               B+25 (peers one above each), LocalStack B+30
#   SEDIMENT_CLUSTER_BUCKET     bucket of the archive (default sediment)
#   SEDIMENT_CLUSTER_PREFIX     prefix in it (default cluster)
#   AWS_ENDPOINT_URL            an S3 server that is already running: used instead of starting
#                               LocalStack (the other AWS_* variables default to LocalStack's)
#   SEDIMENT_BIN                the broker binary (default <repo>/target/debug/sediment)
#   SEDIMENT_*                  any other `sediment serve` setting reaches all three brokers
#                               (e.g. SEDIMENT_SEGMENT_MS=5000 to archive sooner)
# status, down and every later up use the settings the first up recorded in the cluster
# directory (until down --wipe), so only SEDIMENT_CLUSTER_DIR has to be given again.
# up on a cluster that runs only says so; if only some of its members run (a broker was
# killed, say), up starts the others again.
#
# LocalStack keeps S3 in memory, so `down` copies the archive (the bucket's objects under the
# prefix) into <dir>/s3 before it stops a LocalStack it started, and `up` puts it back: the
# brokers' data, etcd and the archive stay consistent across down/up.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
D="${SEDIMENT_CLUSTER_DIR:-$REPO/.cluster}"
BIN="${SEDIMENT_BIN:-$REPO/target/debug/sediment}"
export LOCALSTACK_DIR="${LOCALSTACK_DIR:-$REPO/.localstack}"
CHECK_TOPIC=sediment-cluster-check
STARTED=0 # set once up has started a process: a failure then stops them again
LS_STARTER="" # pid of the background localstack/start.sh during up

say() { echo "cluster: $*" >&2; }
die() {
  say "$*"
  if ((STARTED)); then
    say "stopping what this run started (logs stay in $D)"
    [[ -n "$LS_STARTER" ]] && { wait "$LS_STARTER" 2>/dev/null || true; }
    stop_everything >/dev/null 2>&1 || true
  fi
  exit 1
}
now() { date +%s.%N; }

# ----------------------------------------------------------------------- settings
settings_from_env() {
  local base="${SEDIMENT_CLUSTER_PORT_BASE:-}"
  if [[ -n "$base" ]]; then
    [[ "$base" =~ ^[0-9]+$ ]] && ((base >= 1024 && base + 30 <= 65535)) \
      || { say "SEDIMENT_CLUSTER_PORT_BASE=$base: give a number from 1024 to 65505"; exit 2; }
    KAFKA_PORTS=($((base + 1)) $((base + 2)) $((base + 3)))
    HTTP_PORTS=($((base + 11)) $((base + 12)) $((base + 13)))
    ETCD_PORTS=($((base + 21)) $((base + 23)) $((base + 25)))
    LS_PORT=$((base + 30))
  else
    KAFKA_PORTS=(9091 9092 9093)
    HTTP_PORTS=(9191 9192 9193)
    ETCD_PORTS=(2379 22379 32379)
    LS_PORT=4566
  fi
  BUCKET="${SEDIMENT_CLUSTER_BUCKET:-sediment}"
  PREFIX="${SEDIMENT_CLUSTER_PREFIX:-cluster}"
  PREFIX="${PREFIX#/}"
  PREFIX="${PREFIX%/}"
  if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
    S3_ENDPOINT="${AWS_ENDPOINT_URL%/}"
    OWN_S3=external # someone else runs it; down leaves it alone
  else
    S3_ENDPOINT="http://127.0.0.1:$LS_PORT"
    OWN_S3=yes # decided at up: "yes" if this script starts LocalStack, "no" if one ran already
  fi
}

# What `up` chose, so that status and down see the same ports without the environment
# (-g: load_settings sources it inside a function).
save_settings() {
  declare -p KAFKA_PORTS HTTP_PORTS ETCD_PORTS LS_PORT BUCKET PREFIX S3_ENDPOINT OWN_S3 \
    | sed 's/^declare -/declare -g -/' >"$D/cluster.env"
}

load_settings() {
  if [[ -f "$D/cluster.env" ]]; then
    # shellcheck disable=SC1091
    source "$D/cluster.env"
  else
    settings_from_env
  fi
}

bootstrap() { local IFS=,; echo "${KAFKA_PORTS[*]/#/127.0.0.1:}"; }
etcd_endpoints() { local IFS=,; echo "${ETCD_PORTS[*]/#/http://127.0.0.1:}"; }

# ---------------------------------------------------------------------- processes
# pid_runs PID: the process exists and is not a zombie waiting for its parent.
pid_runs() {
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$st" && "${st%% *}" != Z ]]
}

# alive NAME: the process of $D/NAME.pid runs (and is still the program started, not a
# later process that got its pid).
alive() {
  local f="$D/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] && pid_runs "$pid" || return 1
  case "$1" in
    etcd*) grep -qa etcd "/proc/$pid/cmdline" ;;
    broker*) grep -qa serve "/proc/$pid/cmdline" ;;
  esac
}

ls_pidfile() { echo "$LOCALSTACK_DIR/localstack-$LS_PORT.pid"; }
ls_healthy() {
  curl -sf --max-time 2 "http://127.0.0.1:$LS_PORT/_localstack/health" 2>/dev/null \
    | grep -Eq '"s3": "(available|running)"'
}

members() { echo etcd1 etcd2 etcd3 broker1 broker2 broker3; }

# stop_pids TIMEOUT NAME...: SIGTERM, wait up to TIMEOUT seconds, then SIGKILL; drop pid files.
stop_pids() {
  local timeout=$1 name pid
  shift
  local pids=()
  for name in "$@"; do
    if alive "$name"; then
      pid="$(cat "$D/$name.pid")"
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  local end=$((SECONDS + timeout))
  while ((${#pids[@]})); do
    local left=()
    for pid in "${pids[@]}"; do pid_runs "$pid" && left+=("$pid"); done
    pids=("${left[@]+"${left[@]}"}")
    ((${#pids[@]})) || break
    if ((SECONDS >= end)); then
      say "still running after ${timeout} s of SIGTERM, killing: ${pids[*]}"
      kill -9 "${pids[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  for name in "$@"; do rm -f "$D/$name.pid"; done
}

# ------------------------------------------------------------------- the S3 archive
# s3 save|restore|wipe: copy the objects under the prefix to <dir>/s3, put them back, or delete
# them. Plain unsigned HTTP, which LocalStack accepts (it does not check signatures).
s3() {
  python3 - "$1" "$S3_ENDPOINT" "$BUCKET" "$PREFIX" "$D/s3" <<'PY'
import os, shutil, sys, urllib.parse, urllib.request, xml.etree.ElementTree as ET

op, endpoint, bucket, prefix, snap = sys.argv[1:]
base = f"{endpoint}/{bucket}"

def call(method, key="", data=None, query=""):
    url = f"{base}/{urllib.parse.quote(key, safe='/')}" + (f"?{query}" if query else "")
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()

def keys():
    token = None
    while True:
        q = {"list-type": "2", "prefix": prefix + "/"}
        if token:
            q["continuation-token"] = token
        root = ET.fromstring(call("GET", query=urllib.parse.urlencode(q)))
        for c in root.findall("{*}Contents"):
            yield c.find("{*}Key").text
        token = root.findtext("{*}NextContinuationToken")
        if not token:
            return

if op == "save":
    tmp = snap + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    n = 0
    for k in keys():
        path = os.path.join(tmp, k)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(call("GET", k))
        n += 1
    os.makedirs(tmp, exist_ok=True)
    shutil.rmtree(snap, ignore_errors=True)
    os.rename(tmp, snap)
    print(f"saved {n} object(s) to {snap}")
elif op == "restore":
    n = 0
    for dirpath, _, files in os.walk(snap):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                call("PUT", os.path.relpath(path, snap), f.read())
            n += 1
    print(f"restored {n} object(s) from {snap}")
elif op == "wipe":
    ks = list(keys())
    for k in ks:
        call("DELETE", k)
    print(f"deleted {len(ks)} object(s) under s3://{bucket}/{prefix}/")
PY
}

# -------------------------------------------------------------------------------- up
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# check_ports NAME...: the ports of these members (etcdI, brokerI, s3) are free.
check_ports() {
  local busy=() name i p
  for name in "$@"; do
    i=$((${name: -1} - 1))
    case $name in
      etcd*) busy+=("${ETCD_PORTS[i]}:etcd $((i + 1)) client" "$((ETCD_PORTS[i] + 1)):etcd $((i + 1)) peer") ;;
      broker*) busy+=("${KAFKA_PORTS[i]}:broker $((i + 1)) Kafka" "${HTTP_PORTS[i]}:broker $((i + 1)) HTTP") ;;
      # A LocalStack that already answers there is used as it is; anything else is in the way.
      s3) [[ $OWN_S3 != external ]] && ! ls_healthy && busy+=("$LS_PORT:LocalStack") ;;
    esac
  done
  local wanted=("${busy[@]}")
  busy=()
  for p in "${wanted[@]}"; do port_in_use "${p%%:*}" && busy+=("$p"); done
  ((${#busy[@]})) || return 0
  say "cannot start: these ports are in use on 127.0.0.1:"
  for p in "${busy[@]}"; do
    local who
    who="$(ss -Hltnp "sport = :${p%%:*}" 2>/dev/null | grep -o 'users:(([^)]*' | head -1 || true)"
    say "  ${p%%:*} (${p#*:})${who:+ held by ${who#users:((}}"
  done
  say "stop whatever holds them, or pick other ports with SEDIMENT_CLUSTER_PORT_BASE=<n>"
  exit 1
}

# wait_http NAME URL PATTERN TIMEOUT: until URL answers 200 with PATTERN in its body, while
# NAME's process runs.
wait_http() {
  local name=$1 url=$2 pattern=$3 end=$((SECONDS + $4))
  until curl -sf --max-time 2 "$url" 2>/dev/null | grep -q "$pattern"; do
    alive "$name" || { tail -20 "$D/$name.log" >&2; die "$name exited; its log is $D/$name.log"; }
    ((SECONDS < end)) || { tail -20 "$D/$name.log" >&2; die "$name: no answer from $url in $4 s"; }
    sleep 0.1
  done
}

# start_etcd I...: etcd members I (1-3) of the three-member cluster.
start_etcd() {
  local i initial="" token
  for i in 0 1 2; do
    initial+="${initial:+,}etcd$((i + 1))=http://127.0.0.1:$((ETCD_PORTS[i] + 1))"
  done
  token="sediment-local-${ETCD_PORTS[0]}"
  for i in "$@"; do
    local name="etcd$i" url="http://127.0.0.1:${ETCD_PORTS[i - 1]}"
    local peer="http://127.0.0.1:$((ETCD_PORTS[i - 1] + 1))"
    # --initial-* only matter the first time: a member with a data directory rejoins as it was.
    # Compaction keeps the history of the brokers' keys from growing (README: Run a cluster).
    setsid etcd --name "$name" --data-dir "$D/$name" \
      --listen-client-urls "$url" --advertise-client-urls "$url" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "$initial" --initial-cluster-token "$token" \
      --initial-cluster-state new --auto-compaction-mode periodic \
      --auto-compaction-retention 1h --logger zap --log-outputs stderr \
      </dev/null >>"$D/$name.log" 2>&1 &
    echo $! >"$D/$name.pid"
  done
}

# start_brokers I...: brokers I (1-3).
start_brokers() {
  local i
  local -a aws=(AWS_ENDPOINT_URL="$S3_ENDPOINT" AWS_REGION="${AWS_REGION:-us-east-1}"
    AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}")
  [[ $S3_ENDPOINT == http://* ]] && aws+=(AWS_ALLOW_HTTP=true)
  for i in "$@"; do
    env "${aws[@]}" setsid "$BIN" serve --broker-id "$i" \
      --kafka-addr "127.0.0.1:${KAFKA_PORTS[i - 1]}" --http-addr "127.0.0.1:${HTTP_PORTS[i - 1]}" \
      --data-dir "$D/broker$i" --etcd-endpoints "$(etcd_endpoints)" \
      --object-store "s3://$BUCKET/$PREFIX" </dev/null >>"$D/broker$i.log" 2>&1 &
    echo $! >"$D/broker$i.pid"
  done
}

# Until a topic with three replicas takes an acks=all write (every broker registered, a leader
# elected, both followers in sync), then delete that topic again.
wait_acks_all() {
  local end=$((SECONDS + 60)) out="" b
  b="$(bootstrap)"
  b="${b%%,*}"
  while :; do
    if out="$("$BIN" topics -b "$b" create "$CHECK_TOPIC" --partitions 1 --replication-factor 3 2>&1)" \
      || [[ $out == *TopicAlreadyExists* ]]; then
      if out="$(echo "up at $(date -u +%FT%TZ)" | "$BIN" produce -b "$b" --acks all "$CHECK_TOPIC" 2>&1)"; then
        break
      fi
    fi
    ((SECONDS < end)) || die "no acks=all write accepted within 60 s; last answer: $out (logs: $D/broker*.log)"
    sleep 0.2
  done
  "$BIN" topics -b "$b" delete "$CHECK_TOPIC" >/dev/null 2>&1 || true
}

s3_reachable() {
  if [[ $OWN_S3 == external ]]; then
    [[ "$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$S3_ENDPOINT" || true)" != 000 ]]
  else
    ls_healthy
  fi
}

# restart NAME...: start these stopped members of a running cluster again (a broker that
# was killed, say), with their data.
restart() {
  local name e=() b=()
  s3_reachable || { say "partly running in $D, and S3 at $S3_ENDPOINT does not answer:"
    say "run '$0 down' (data is kept), then '$0 up'"; exit 1; }
  say "partly running in $D; starting again: $*"
  check_ports "$@"
  for name in "$@"; do
    case $name in etcd*) e+=("${name#etcd}") ;; broker*) b+=("${name#broker}") ;; esac
  done
  if ((${#e[@]})); then
    start_etcd "${e[@]}"
    for name in "${e[@]}"; do wait_http "etcd$name" "http://127.0.0.1:${ETCD_PORTS[name - 1]}/health" '"true"' 30; done
  fi
  if ((${#b[@]})); then
    start_brokers "${b[@]}"
    for name in "${b[@]}"; do wait_http "broker$name" "http://127.0.0.1:${HTTP_PORTS[name - 1]}/health" ok 60; done
  fi
  wait_acks_all
  say "started again: $*"
  info
}

up() {
  local t0 i
  t0="$(now)"
  if [[ -f "$D/cluster.env" ]]; then
    load_settings
    local running=() stopped=()
    for i in $(members); do if alive "$i"; then running+=("$i"); else stopped+=("$i"); fi; done
    if ((${#running[@]} == 6)); then
      say "already running in $D"
      info
      return 0
    elif ((${#running[@]})); then
      restart "${stopped[@]}"
      return 0
    fi
    # Stopped: start again on the recorded ports (etcd's members know each other by them).
    [[ $OWN_S3 == external ]] || OWN_S3=yes
  else
    settings_from_env
  fi
  command -v etcd >/dev/null || { say "etcd not found: apt-get install etcd-server"; exit 1; }
  command -v curl >/dev/null || { say "curl not found: apt-get install curl"; exit 1; }
  [[ -x "$BIN" ]] || { say "no broker binary at $BIN: cargo build --bin sediment, or set SEDIMENT_BIN"; exit 1; }
  check_ports s3 $(members)
  mkdir -p "$D"
  # S3 first (LocalStack takes the longest to start), etcd meanwhile.
  if [[ $OWN_S3 == external ]]; then
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$S3_ENDPOINT/$BUCKET" || true)"
    [[ $code == 200 || $code == 409 ]] \
      || say "note: creating bucket $BUCKET at $S3_ENDPOINT answered HTTP $code; it must exist"
  else
    ls_healthy && OWN_S3=no || OWN_S3=yes
    LOCALSTACK_PORT="$LS_PORT" bash "$REPO/localstack/start.sh" "$BUCKET" >"$D/localstack-start.log" 2>&1 &
    LS_STARTER=$!
  fi
  save_settings
  STARTED=1
  start_etcd 1 2 3
  for i in 1 2 3; do wait_http "etcd$i" "http://127.0.0.1:${ETCD_PORTS[i - 1]}/health" '"true"' 30; done
  if [[ -n "$LS_STARTER" ]]; then
    local rc=0
    wait "$LS_STARTER" || rc=$?
    LS_STARTER=""
    ((rc == 0)) || { cat "$D/localstack-start.log" >&2; die "LocalStack did not start"; }
    # PUTs of the same immutable objects, so harmless if a LocalStack that ran already has them.
    if [[ -d "$D/s3" ]]; then s3 restore >&2 || die "could not restore $D/s3 into the bucket"; fi
  fi
  start_brokers 1 2 3
  for i in 1 2 3; do wait_http "broker$i" "http://127.0.0.1:${HTTP_PORTS[i - 1]}/health" ok 60; done
  wait_acks_all
  local took
  took="$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"
  say "up in $took s: a topic with three replicas took an acks=all write"
  info
}

info() {
  local host="${S3_ENDPOINT#*://}" ssl=false
  [[ $S3_ENDPOINT == https://* ]] && ssl=true
  cat <<EOF
bootstrap:  $(bootstrap)
etcd:       $(etcd_endpoints)
S3:         $S3_ENDPOINT, archive in s3://$BUCKET/$PREFIX
HTTP:       http://127.0.0.1:${HTTP_PORTS[0]}/metrics (also /health, /ready; brokers 2 and 3 on ${HTTP_PORTS[1]}, ${HTTP_PORTS[2]})
logs:       $D/*.log

sediment topics -b 127.0.0.1:${KAFKA_PORTS[0]} create orders --partitions 3 --replication-factor 3
printf 'k1:hello\nk2:world\n' | kcat -b $(bootstrap) -t orders -P -K: -X acks=all

DuckDB reads what the brokers archived, <prefix>/topics/<topic>/partition=<n>/<offset>-<epoch>.parquet
(a partition is archived once --segment-bytes, 64 MiB, wait or its oldest batch waited --segment-ms,
60 s; but see docs/operations.md, "Known issues": partitions with followers wait for the bytes):
  INSTALL httpfs; LOAD httpfs;
  CREATE SECRET sediment_local (TYPE s3, KEY_ID '${AWS_ACCESS_KEY_ID:-test}', SECRET '${AWS_SECRET_ACCESS_KEY:-test}',
    REGION '${AWS_REGION:-us-east-1}', ENDPOINT '$host', URL_STYLE 'path', USE_SSL $ssl);
  SELECT partition, count(*), min("offset"), max("offset")
  FROM read_parquet('s3://$BUCKET/$PREFIX/topics/orders/**/*.parquet', hive_partitioning = true)
  GROUP BY ALL ORDER BY partition;
EOF
}

# ---------------------------------------------------------------------------- status
status() {
  [[ -f "$D/cluster.env" ]] || { echo "no cluster in $D (run: $0 up)"; return 1; }
  load_settings
  local i all=0 first=""
  case $OWN_S3 in
    external) echo "s3:       $S3_ENDPOINT (not started here)" ;;
    *)
      if ls_healthy; then
        local who="started by this script"
        [[ $OWN_S3 == no ]] && who="was already running"
        echo "s3:       LocalStack on $S3_ENDPOINT, running ($who)"
      else
        echo "s3:       LocalStack on $S3_ENDPOINT, NOT running"
        all=1
      fi
      ;;
  esac
  for i in 1 2 3; do
    local port="${ETCD_PORTS[i - 1]}"
    if alive "etcd$i"; then
      local h
      h="$(curl -s --max-time 2 "http://127.0.0.1:$port/health" 2>/dev/null || true)"
      echo "etcd$i:    pid $(cat "$D/etcd$i.pid"), client port $port, health ${h:-no answer}"
    else
      echo "etcd$i:    NOT running (client port $port)"
      all=1
    fi
  done
  for i in 1 2 3; do
    local kp="${KAFKA_PORTS[i - 1]}" hp="${HTTP_PORTS[i - 1]}"
    if alive "broker$i"; then
      local ready
      ready="$(curl -s --max-time 2 "http://127.0.0.1:$hp/ready" 2>/dev/null | head -1 || true)"
      echo "broker$i:  pid $(cat "$D/broker$i.pid"), Kafka 127.0.0.1:$kp, HTTP $hp, ready: ${ready:-no answer}"
      first="${first:-127.0.0.1:$kp}"
    else
      echo "broker$i:  NOT running (Kafka 127.0.0.1:$kp)"
      all=1
    fi
  done
  if [[ -n "$first" ]]; then
    echo
    echo "\$ sediment cluster status -b $first"
    "$BIN" cluster status -b "$first" || all=1
  fi
  return $all
}

# ------------------------------------------------------------------------------ down
stop_everything() {
  # Brokers first, while etcd still runs: SIGTERM makes each hand its partitions over and
  # revoke its lease there.
  stop_pids 30 broker1 broker2 broker3
  if [[ $OWN_S3 == yes ]]; then
    local keep=0
    if ((!WIPE)); then
      if ! ls_healthy; then
        say "LocalStack was not running: what it held is gone (the copy in $D/s3, if any, is from the last down)"
      elif ! s3 save >&2; then
        say "could not copy the archive out of LocalStack; it is left running on $S3_ENDPOINT"
        keep=1
      fi
    fi
    ((keep)) || LOCALSTACK_PORT="$LS_PORT" bash "$REPO/localstack/stop.sh"
  fi
  stop_pids 10 etcd1 etcd2 etcd3
}

down() {
  WIPE=0
  [[ "${1:-}" == --wipe ]] && WIPE=1
  if [[ ! -f "$D/cluster.env" ]]; then
    echo "no cluster in $D"
  else
    load_settings
    stop_everything
    if ((WIPE)) && [[ $OWN_S3 != yes ]]; then
      # The archive outlives this cluster in an S3 server that keeps running; a new cluster
      # with a new etcd must not find the old segments under its prefix.
      s3 wipe >&2 || say "note: could not delete s3://$BUCKET/$PREFIX at $S3_ENDPOINT; delete it yourself"
    fi
    echo "cluster stopped"
  fi
  if ((WIPE)); then
    rm -rf "$D"
    echo "deleted $D"
  fi
}

WIPE=0
case "${1:-}" in
  up | start) up ;;
  down | stop) shift; down "$@" ;;
  status) status ;;
  *) echo "usage: $0 up | status | down [--wipe]   (start/stop: the same as up/down)" >&2; exit 2 ;;
esac
