"""A test-only HTTPS proxy: lets a plugin that hard-codes a provider's https URL
(llm-gemini) talk to the simulator, over real TLS, with no network.

The client is given ``HTTPS_PROXY=http://127.0.0.1:PORT`` and ``SSL_CERT_FILE``
pointing at a self-signed certificate made here for the provider's host name
with the ``openssl`` CLI. It sends ``CONNECT host:443``; the proxy answers 200,
terminates TLS with that certificate and relays the decrypted bytes, both ways,
to the simulator's plain HTTP port. One thread per connection, one loop in it:
the TLS socket is only ever used from that thread.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest


def make_certificate(directory: Path, hostname: str) -> tuple[Path, Path]:
    """A self-signed certificate and its key for ``hostname`` (skips the test when
    there is no ``openssl``). The certificate is its own CA: trust it with
    ``SSL_CERT_FILE``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={hostname}",
            "-addext", f"subjectAltName=DNS:{hostname}",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class TLSProxy:
    """``CONNECT`` proxy on 127.0.0.1 that ends TLS and forwards to ``127.0.0.1:target_port``.

    ``tunnels`` lists the ``CONNECT`` targets it was asked for.
    """

    def __init__(self, cert: Path, key: Path, target_port: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["http/1.1"])  # as a real HTTP/1.1 server agrees
        self.target_port = target_port
        self.tunnels: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> TLSProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError), client:
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(4096)
                if not data:
                    return
                head += data
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _ = request_line.split(" ", 2)
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.tunnels.append(target)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with (
                self.context.wrap_socket(client, server_side=True) as tls,
                socket.create_connection(("127.0.0.1", self.target_port)) as upstream,
            ):
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._relay(tls, upstream)

    @staticmethod
    def _relay(tls: ssl.SSLSocket, upstream: socket.socket) -> None:
        while True:
            if not tls.pending():  # decrypted bytes already buffered: no need to wait
                readable, _, _ = select.select([tls, upstream], [], [], 30)
                if not readable:
                    return
            else:
                readable = [tls]
            if tls in readable:
                data = tls.recv(65536)
                if not data:
                    return
                upstream.sendall(data)
            if upstream in readable:
                data = upstream.recv(65536)
                if not data:
                    return
                tls.sendall(data)
