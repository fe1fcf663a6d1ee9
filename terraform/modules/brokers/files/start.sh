#!/bin/bash
# Runs `sediment serve` on an EC2 instance of the brokers' autoscaling group, as the systemd
# unit sediment.service. Everything but the broker id comes from /etc/sediment/sediment.env
# (SEDIMENT_* variables written by the instance's user data).
#
# The broker id: an instance whose data directory already belongs to a broker (it holds
# cluster-member.json, written when the broker first joined) keeps that id. A new instance
# takes the lowest id in 1..BROKER_ID_MAX that no live broker has registered in etcd. Two new
# instances may pick the same id at once: the broker refuses an id whose registration another
# live process still renews (after waiting out the session timeout), exits non-zero, and
# systemd starts this script again, which then sees the winner's registration and picks the
# next id.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
member="${SEDIMENT_DATA_DIR:?}/cluster-member.json"
if [[ -s "$member" ]]; then
  id="$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["broker_id"]))' "$member")"
  echo "start.sh: $member names broker $id" >&2
else
  id="$(python3 "$here/free-broker-id.py")"
  echo "start.sh: fresh data directory; claiming broker id $id" >&2
fi
exec "${SEDIMENT_BIN:-/usr/local/bin/sediment}" serve --broker-id "$id"
