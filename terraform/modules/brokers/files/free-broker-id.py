#!/usr/bin/env python3
"""Prints the lowest broker id in 1..BROKER_ID_MAX that no live broker holds.

Live brokers are the keys <SEDIMENT_ETCD_PREFIX>/brokers/<id> in etcd, which each broker
attaches to its lease (they vanish when it stops renewing it). Read through etcd's JSON
gateway (POST /v3/kv/range), so the instance needs no etcdctl. Tries each endpoint of
SEDIMENT_ETCD_ENDPOINTS in turn; exits 1 when none answers or every id is taken.
"""

import base64
import json
import os
import sys
import urllib.request


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def live_ids(endpoint: str, prefix: str) -> set[int]:
    start = f"{prefix}/brokers/"
    # The range [start, start with its last byte + 1): every key under start.
    end = start[:-1] + chr(ord(start[-1]) + 1)
    body = json.dumps({"key": b64(start), "range_end": b64(end), "keys_only": True}).encode()
    req = urllib.request.Request(f"{endpoint.rstrip('/')}/v3/kv/range", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        answer = json.load(resp)
    ids = set()
    for kv in answer.get("kvs", []):
        key = base64.b64decode(kv["key"]).decode()
        tail = key[len(start):]
        if tail.isdigit():
            ids.add(int(tail))
    return ids


def main() -> int:
    endpoints = [e.strip() for e in os.environ.get("SEDIMENT_ETCD_ENDPOINTS", "").split(",") if e.strip()]
    prefix = os.environ.get("SEDIMENT_ETCD_PREFIX", "/sediment").rstrip("/")
    highest = int(os.environ.get("BROKER_ID_MAX", "64"))
    errors = []
    for endpoint in endpoints:
        try:
            taken = live_ids(endpoint, prefix)
        except OSError as e:
            errors.append(f"{endpoint}: {e}")
            continue
        for candidate in range(1, highest + 1):
            if candidate not in taken:
                print(candidate)
                return 0
        print(f"free-broker-id: every id 1..{highest} is held by a live broker", file=sys.stderr)
        return 1
    print(f"free-broker-id: no etcd endpoint answered: {'; '.join(errors) or 'none given'}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
