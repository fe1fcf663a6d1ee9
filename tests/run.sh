#!/usr/bin/env bash
# Sediment's whole test suite, from a fresh Debian 12 machine (as root, or with sudo):
#
#     bash tests/run.sh [extra pytest args, e.g. -k kcat]
#
# 1. installs what is missing: apt packages (kcat, protobuf-compiler, etcd-server, curl,
#    nodejs, npm, openjdk-17-jre-headless for Spark), a Python venv at <repo>/.venv with the
#    pinned packages of tests/integration/requirements.txt, and kafkajs in
#    tests/integration/js/node_modules from its package-lock.json (each step is skipped when
#    already done);
# 2. cargo build --workspace --bins;
# 3. cargo nextest run --workspace (cargo test --workspace without nextest);
# 4. the integration tests: .venv/bin/pytest -v tests/integration, against the built broker;
# 5. the deployment checks (tests/deploy/check.sh: chart, Terraform, Dockerfile);
# 6. librdkafka's own integration tests (tests/librdkafka/run.sh, the list in tests.txt).
# Exits non-zero if any step fails. Steps 3 and 4 both run even if one of them fails.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

say() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "tests/run.sh: run as root, or install sudo" >&2
    exit 1
  fi
  SUDO=(sudo)
fi

# ---------------------------------------------------------------- apt packages
declare -A PKG_FOR_CMD=([kcat]=kcat [protoc]=protobuf-compiler [etcd]=etcd-server [curl]=curl [python3]=python3
                        [node]=nodejs [npm]=npm [java]=openjdk-17-jre-headless)
missing=()
for cmd in kcat protoc etcd curl python3 node npm java; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKG_FOR_CMD[$cmd]}")
done
# The JRE's postinst links its man pages into /usr/share/man/man1, which slim images lack.
if [[ " ${missing[*]} " == *" openjdk-17-jre-headless "* ]]; then
  "${SUDO[@]}" mkdir -p /usr/share/man/man1
fi
# Creating the venv needs ensurepip (Debian's python3-venv); only ask for it when the venv is missing.
if [[ ! -x .venv/bin/python ]] && command -v python3 >/dev/null 2>&1 \
    && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ------------------------------------------------------------------ Python venv
REQS=tests/integration/requirements.txt
STAMP=.venv/.sediment-requirements.sha256
if [[ -x .venv/bin/python ]] && ! .venv/bin/python -c '' >/dev/null 2>&1; then
  say "removing a broken .venv"
  rm -rf .venv
fi
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  python3 -m venv .venv
fi
want_sum="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want_sum" ]]; then
  say "pip install -r $REQS"
  .venv/bin/python -m pip install --disable-pip-version-check --no-input -q -r "$REQS"
  echo "$want_sum" >"$STAMP"
fi

# ------------------------------------------------------------ kafkajs (node)
# `npm ci` installs exactly what package-lock.json pins; the stamp inside node_modules
# records which lock it was, so this is skipped until the lock changes.
JS_DIR=tests/integration/js
JS_STAMP=$JS_DIR/node_modules/.sediment-package-lock.sha256
js_sum="$(sha256sum "$JS_DIR/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$JS_STAMP" || "$(cat "$JS_STAMP")" != "$js_sum" ]]; then
  say "npm ci in $JS_DIR"
  (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$js_sum" >"$JS_STAMP"
fi

# ------------------------------------------------------------------------ cargo
if ! command -v cargo >/dev/null 2>&1; then
  echo "tests/run.sh: cargo not found (install Rust with rustup)" >&2
  exit 1
fi
say "cargo build --workspace --bins"
cargo build --workspace --bins

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
  | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
export SEDIMENT_BIN="${SEDIMENT_BIN:-$TARGET_DIR/debug/sediment}"
if [[ ! -x "$SEDIMENT_BIN" ]]; then
  echo "tests/run.sh: the broker binary $SEDIMENT_BIN was not built" >&2
  exit 1
fi

failed=()
if cargo nextest --version >/dev/null 2>&1; then
  say "cargo nextest run --workspace"
  cargo nextest run --workspace --no-tests=warn || failed+=("cargo nextest")
else
  say "cargo test --workspace (cargo-nextest not installed)"
  cargo test --workspace || failed+=("cargo test")
fi

# ------------------------------------------------------------ integration tests
say "pytest tests/integration (SEDIMENT_BIN=$SEDIMENT_BIN)"
.venv/bin/pytest -v tests/integration "$@" || failed+=("pytest tests/integration")

# ------------------------------------------------------------ deployment checks
# The Helm chart, Terraform modules, Dockerfile and compose file, with the real tools
# (helm, kubernetes-validate, terraform with an offline AWS provider, checkov, trivy), which
# tests/deploy/check.sh installs into .deploy-tools. Skipped with pytest args, as below.
if (($# == 0)); then
  say "deployment checks (tests/deploy/check.sh)"
  bash tests/deploy/check.sh || failed+=("deployment checks")
fi

# ------------------------------------------------- librdkafka's own integration tests
# The pinned list of tests/librdkafka/tests.txt, built from librdkafka's source (crates.io's
# rdkafka-sys carries it) and run against a Sediment broker, then the list of
# tests-cluster.txt against a three-broker cluster on etcd. Skipped when pytest args select
# a subset (e.g. -k kcat), since then a quick run is wanted.
if (($# == 0)); then
  say "librdkafka test suite (tests/librdkafka/run.sh)"
  bash tests/librdkafka/run.sh || failed+=("librdkafka tests")
  say "librdkafka test suite against three brokers (tests/librdkafka/run.sh --cluster)"
  bash tests/librdkafka/run.sh --cluster || failed+=("librdkafka cluster tests")
fi

if ((${#failed[@]})); then
  echo "tests/run.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
