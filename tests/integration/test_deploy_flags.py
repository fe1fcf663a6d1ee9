"""The deployment files use only settings the broker binary has.

charts/sediment, terraform/, the Dockerfile and docker-compose.yml start `sediment serve` with
flags and SEDIMENT_* environment variables; a renamed or removed setting would make every
pod or instance fail at start-up, far from the change that caused it. These tests read those
files (no helm or terraform needed) and compare them with `sediment serve --help` of the
binary under test, in both directions: whatever the files name exists, and every serve
setting is either passed through by the chart (its values.schema.json `settings`) or set by
the chart itself, so a new flag makes the chart decide about it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, sediment_binary

CHART = REPO_ROOT / "charts" / "sediment"
TERRAFORM = REPO_ROOT / "terraform"

# Settings the chart sets itself rather than through `settings`, by flag. config and
# cache-dir are deliberately not offered: the chart passes no config file, and the cache
# lives under the data directory, the only writable volume besides /tmp.
CHART_MANAGED = {
    "kafka-addr", "advertised-addr", "http-addr", "data-dir", "object-store", "broker-id",
    "etcd-endpoints", "etcd-prefix", "rack",
    # externalEtcd.tls and externalEtcd.auth: files mounted from Secrets.
    "etcd-ca-file", "etcd-cert-file", "etcd-key-file", "etcd-username", "etcd-password-file",
    # listeners.*: each enabled listener bound on every interface and advertised as the pod's
    # DNS name; interBrokerListener.
    "listener", "advertised-listener", "inter-broker-listener-name",
    # tls.*, only with an SSL or SASL_SSL listener: the files of a mounted kubernetes.io/tls
    # Secret (the broker refuses them without such a listener).
    "ssl-cert-file", "ssl-key-file", "ssl-ca-file", "ssl-client-auth", "ssl-reload-interval-ms",
    # sasl.*, only with a SASL_SSL or SASL_PLAINTEXT listener (likewise refused without one);
    # the PLAIN users file from a mounted Secret.
    "sasl-enabled-mechanisms", "sasl-plain-users-file", "connections-max-reauth-ms",
    "failed-authentication-delay-ms", "max-failed-authentications-per-minute",
}
# listener-security-protocol-map: the chart names each listener after its protocol (PLAINTEXT,
# SSL, SASL_SSL, SASL_PLAINTEXT), so there is nothing to map.
CHART_NOT_OFFERED = {"config", "cache-dir", "listener-security-protocol-map"}
# Environment names in the deployment files that are not broker settings.
NOT_SETTINGS = {
    "SEDIMENT_BIN",  # terraform/modules/brokers/files/start.sh: where the binary is (tests)
}
ENV_NAME = re.compile(r"\bSEDIMENT_[A-Z0-9_]*[A-Z0-9]\b")
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def help_text(*args: str) -> str:
    binary = sediment_binary()
    assert binary.is_file(), f"{binary} not found: build it (cargo build) or set SEDIMENT_BIN"
    return subprocess.run([str(binary), *args, "--help"], check=True, capture_output=True,
                          text=True, timeout=30).stdout


@pytest.fixture(scope="module")
def serve() -> dict[str, str]:
    """flag name -> its environment variable, from `sediment serve --help`."""
    text = help_text("serve")
    pairs = dict(re.findall(r"^\s+--([a-z][a-z0-9-]*) <[A-Z_]+>\n.*?\[env: (SEDIMENT_[A-Z0-9_]+)=\]",
                            text, re.M | re.S))
    assert "broker-id" in pairs and pairs["broker-id"] == "SEDIMENT_BROKER_ID", text
    for flag in re.findall(r"^\s+--([a-z][a-z0-9-]*)", text, re.M):
        if flag != "help":
            assert flag in pairs, f"--{flag} has no [env: ...] in serve --help"
    return pairs


@pytest.fixture(scope="module")
def known_env(serve) -> set[str]:
    """Every SEDIMENT_* the binary reads: serve's, and the admin commands' (SEDIMENT_BOOTSTRAP)."""
    names = set(serve.values())
    for cmd in (["cluster"], ["topics"], ["groups"]):
        names |= set(re.findall(r"\[env: (SEDIMENT_[A-Z0-9_]+)=", help_text(*cmd)))
    return names


def start_script_of_chart() -> str:
    """The start.sh the chart's ConfigMap carries: the brokers' command line."""
    text = (CHART / "templates" / "configmap.yaml").read_text()
    m = re.search(r"^  start\.sh: \|\n((?:    .*\n|\n)+)", text, re.M)
    assert m, "templates/configmap.yaml has no start.sh"
    return m.group(1)


def deployment_files() -> list[Path]:
    files = [p for p in CHART.rglob("*") if p.is_file()]
    files += [p for p in TERRAFORM.rglob("*") if p.is_file() and ".terraform" not in p.parts]
    files += [REPO_ROOT / "Dockerfile", REPO_ROOT / "docker-compose.yml"]
    return files


def test_every_sediment_variable_in_the_deployment_files_is_one_the_binary_reads(known_env):
    unknown = {}
    for path in deployment_files():
        for name in ENV_NAME.findall(path.read_text(errors="replace")):
            if name not in known_env and name not in NOT_SETTINGS:
                unknown.setdefault(name, set()).add(str(path.relative_to(REPO_ROOT)))
    assert not unknown, f"SEDIMENT_* names that sediment does not read: {unknown}"


def test_the_start_scripts_pass_only_serve_flags(serve):
    scripts = {
        "charts/sediment/templates/configmap.yaml (start.sh)": start_script_of_chart(),
        "terraform/modules/brokers/files/start.sh": (TERRAFORM / "modules" / "brokers" / "files" / "start.sh").read_text(),
    }
    for name, text in scripts.items():
        assert "sediment serve" in text or '"${SEDIMENT_BIN:-/usr/local/bin/sediment}" serve' in text, name
        flags = set(FLAG.findall(text))
        assert "broker-id" in flags, f"{name} does not pass --broker-id"
        assert flags <= set(serve), f"{name} passes flags serve does not have: {flags - set(serve)}"


def test_chart_settings_are_serve_settings_and_every_serve_setting_is_decided(serve):
    schema = json.loads((CHART / "values.schema.json").read_text())
    offered = schema["properties"]["settings"]["properties"]
    assert schema["properties"]["settings"]["additionalProperties"] is False
    for key in offered:
        flag = key.replace("_", "-")
        assert flag in serve, f"settings.{key}: sediment serve has no --{flag}"
        assert serve[flag] == f"SEDIMENT_{key.upper()}", (key, serve[flag])
        assert flag not in CHART_MANAGED, f"settings.{key} is one the chart sets itself"
    offered_flags = {k.replace("_", "-") for k in offered}
    undecided = set(serve) - offered_flags - CHART_MANAGED - CHART_NOT_OFFERED
    assert not undecided, (
        f"serve flags the chart neither passes through (values.schema.json settings) nor sets: "
        f"{sorted(undecided)}; add them to the schema or to CHART_MANAGED/CHART_NOT_OFFERED here")
    assert CHART_MANAGED <= set(serve), f"gone from serve: {CHART_MANAGED - set(serve)}"


def test_the_chart_sets_what_it_manages(serve):
    templates = "\n".join(p.read_text() for p in (CHART / "templates").iterdir())
    script = start_script_of_chart()
    for flag in CHART_MANAGED:
        assert serve[flag] in templates or f"--{flag}" in script, f"the chart does not set --{flag}"


def test_terraform_settings_guard_names_serve_flags(serve):
    """modules/brokers refuses `settings` keys it sets itself; those names must be real."""
    text = (TERRAFORM / "modules" / "brokers" / "variables.tf").read_text()
    block = re.search(r'variable "settings" \{.*?!contains\(\[(.*?)\]', text, re.S)
    assert block, "modules/brokers/variables.tf: no settings validation"
    managed = re.findall(r'"([a-z_]+)"', block.group(1))
    assert managed, block.group(1)
    for key in managed:
        assert key.replace("_", "-") in serve, f"modules/brokers settings guard: no --{key.replace('_', '-')}"
    user_data = (TERRAFORM / "modules" / "brokers" / "templates" / "user-data.sh.tftpl").read_text()
    main = (TERRAFORM / "modules" / "brokers" / "main.tf").read_text()
    written = set(ENV_NAME.findall(user_data + main))
    for key in managed:
        if key in ("config", "broker_id"):
            continue  # no config file; the id comes from files/start.sh
        assert f"SEDIMENT_{key.upper()}" in written, f"modules/brokers guards {key} but never sets it"
