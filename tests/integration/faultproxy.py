"""A Kafka-aware TCP proxy on 127.0.0.1 that can lose answers.

Clients connect to the proxy (the broker advertises the proxy's address, see
Broker(advertised_addr=...)); each connection is forwarded to the broker frame
by frame. The proxy remembers the api key of every request by correlation id.
When armed with `cut(n, api_key)`, the next n answers to requests with that api
key are swallowed: the broker has handled the request (for Produce with acks=all:
appended and synced it), the proxy drops its answer and closes the client's
connection, so the client sees a broken connection and sends the same request
again on a new one.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter

PRODUCE = 0


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(sock: socket.socket) -> bytes | None:
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    size = struct.unpack(">i", head)[0]
    if size < 0 or size > 256 << 20:
        return None
    body = _recv_exact(sock, size)
    return None if body is None else head + body


class CutProxy:
    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.upstream: tuple[str, int] | None = None
        self.lock = threading.Lock()
        self.to_cut: dict[int, int] = {}          # api key -> answers still to swallow
        self.cuts: Counter = Counter()            # api key -> answers swallowed
        self.requests: Counter = Counter()        # api key -> requests forwarded
        self.connections = 0
        self.closed = False
        self._socks: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name="cut-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, upstream_port: int) -> "CutProxy":
        self.upstream = ("127.0.0.1", upstream_port)
        self._thread.start()
        return self

    def cut(self, n: int, api_key: int = PRODUCE) -> None:
        """Swallow the next `n` answers to `api_key` requests, cutting their connections."""
        with self.lock:
            self.to_cut[api_key] = self.to_cut.get(api_key, 0) + n

    def pending_cuts(self, api_key: int = PRODUCE) -> int:
        with self.lock:
            return self.to_cut.get(api_key, 0)

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += 1
                self._socks.update((client, server))
            inflight: dict[int, int] = {}
            ilock = threading.Lock()
            threading.Thread(target=self._upstream, args=(client, server, inflight, ilock),
                             daemon=True).start()
            threading.Thread(target=self._downstream, args=(client, server, inflight, ilock),
                             daemon=True).start()

    def _shut(self, *socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
            with self.lock:
                self._socks.discard(s)

    def _upstream(self, client, server, inflight, ilock):
        """client -> broker: note each request's api key by correlation id, forward it."""
        while True:
            frame = _read_frame(client)
            if frame is None or len(frame) < 12:
                break
            api_key, _version, corr = struct.unpack(">hhi", frame[4:12])
            with ilock:
                inflight[corr] = api_key
            with self.lock:
                self.requests[api_key] += 1
            try:
                server.sendall(frame)
            except OSError:
                break
        self._shut(client, server)

    def _downstream(self, client, server, inflight, ilock):
        """broker -> client: forward each answer, unless it is one to swallow."""
        while True:
            frame = _read_frame(server)
            if frame is None or len(frame) < 8:
                break
            corr = struct.unpack(">i", frame[4:8])[0]
            with ilock:
                api_key = inflight.pop(corr, None)
            swallow = False
            with self.lock:
                if api_key is not None and self.to_cut.get(api_key, 0) > 0:
                    self.to_cut[api_key] -= 1
                    self.cuts[api_key] += 1
                    swallow = True
            if swallow:
                break  # the broker answered; the client never hears it
            try:
                client.sendall(frame)
            except OSError:
                break
        self._shut(client, server)

    def close(self) -> None:
        self.closed = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        self._shut(*socks)
