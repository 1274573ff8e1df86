"""The simulator server's bounds (`sim.limits`): IPv6 hosts, request bodies it will not
read, idle connections timed out, and a cap on connections answered with a clear 503."""

import http.client
import json
import socket
import threading
import time

import pytest

from llm_streamscope.serving import ServeError, ServeSettings, start
from llm_streamscope.sim.limits import Limits
from llm_streamscope.sim.server import SimServer


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize(("host", "shown"), [("::1", "[::1]"), ("::", "[::]")])
def test_serve_listens_on_ipv6_and_its_url_brackets_the_address(host, shown):
    serving = start(ServeSettings(host=host, port=0, defaults={"speed": "0"}))
    serving.server.start()  # serve() serves in the foreground instead
    try:
        port = serving.server.port
        assert serving.base_url == f"http://{shown}:{port}/v1"
        conn = http.client.HTTPConnection("::1", port, timeout=10)
        conn.request("GET", "/v1/models")
        assert conn.getresponse().status == 200
    finally:
        serving.server.stop()


def test_an_empty_host_is_an_error_not_every_interface():
    """`serve --host ""` says so in one line (the socket module would take it for 0.0.0.0)."""
    with pytest.raises(ServeError) as refused:
        start(ServeSettings(host="", port=0)).server.stop()
    assert str(refused.value) == (
        "--host is empty: give an address (0.0.0.0 or :: listens on every one)"
    )


def post(port, length):
    """A POST with a Content-Length of our choosing: the status and the error message."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("Content-Length", length)
    conn.endheaders()
    response = conn.getresponse()
    return response.status, json.loads(response.read())["error"]["message"], response


@pytest.mark.parametrize(
    ("length", "status", "message"),
    [
        ("99999999999", 413, "The request body (99,999,999,999 bytes) is over 1,000 bytes."),
        ("-1", 400, "Content-Length must be a whole number of bytes, not '-1'"),
        ("12abc", 400, "Content-Length must be a whole number of bytes, not '12abc'"),
    ],
)
def test_a_body_it_will_not_read_is_answered_and_the_server_goes_on(length, status, message):
    with SimServer(defaults={"speed": 0}, limits=Limits(max_body_bytes=1000)) as server:
        got, said, response = post(server.port, length)
        assert (got, said) == (status, message)
        assert response.getheader("Connection") == "close"
        ok = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", "/v1/chat/completions", ok, {"Content-Type": "application/json"})
        assert conn.getresponse().status == 200  # still serving


def test_an_idle_connection_is_closed():
    with SimServer(limits=Limits(idle_timeout_s=0.2)) as server:
        for sent in (b"", b"GET /v1/models HTTP/1.1\r\n"):  # nothing; half a request
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
                idle.sendall(sent)
                assert idle.recv(1024) == b""  # closed by the server, well before 10 s


def connected(port, n):
    """``n`` connections, each inside the server: half a request sent, so a thread reads it."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    for sock in socks:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\n")
    return socks


def test_connections_over_the_cap_get_a_clear_503_and_hold_no_thread():
    threads_before = threading.active_count()
    with SimServer(limits=Limits(max_connections=3)) as server:
        held = connected(server.port, 3)
        time.sleep(0.3)  # each accepted and read by its thread
        refused = connected(server.port, 20)
        for sock in refused:
            head, _, body = sock.recv(4096).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert b"Connection: close" in head
            assert json.loads(body)["error"]["code"] == "too_many_connections"
            assert sock.recv(1024) == b""  # and closed
            sock.close()
        # the server's own thread, and one per connection served: none per refused one
        assert threading.active_count() <= threads_before + 1 + 3
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # served again once a connection is free
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", "/v1/models")
            if conn.getresponse().status == 200:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("never served again")


def test_a_client_that_stops_reading_mid_stream_is_let_go(capfd):
    """The response's sends are under the kernel's send timeout: a stuck reader's
    connection ends (quietly) instead of holding its thread."""
    body = json.dumps(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    threads_before = threading.active_count()
    with (
        SimServer(
            defaults={"speed": 0, "chunks": 200_000}, limits=Limits(idle_timeout_s=0.3)
        ) as server,
        socket.socket() as stuck,
    ):
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", server.port))
        stuck.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode())
        )
        deadline = time.monotonic() + 30
        while threading.active_count() > threads_before + 1:  # the server's own
            assert time.monotonic() < deadline, "the stuck connection's thread lives on"
            time.sleep(0.05)
    assert "Traceback" not in capfd.readouterr().err
