"""A loopback OTLP/HTTP receiver for the tests: what a collector would get, decoded
with the official ``opentelemetry-proto`` messages (no protocol code of ours)."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """``with Receiver() as receiver:`` serves on 127.0.0.1; ``receiver.endpoint`` is
    the base URL for OTEL_EXPORTER_OTLP_ENDPOINT. ``delay_s`` makes it a slow collector."""

    def __init__(self, delay_s: float = 0.0, refuse: tuple[str, ...] = ()):
        self.delay_s = delay_s
        self.refuse = refuse
        """Paths answered 405, as a backend that takes only traces answers /v1/metrics."""
        self.arrived = threading.Event()
        """Set when the first request has arrived (before the delay)."""
        self.requests: list[tuple[str, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.arrived.set()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                if self.path in receiver.refuse:
                    self.send_response(405)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                receiver.requests.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        serve = self.server.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list:
        """Every span received, each with ``.resource`` (its resource's attributes,
        decoded) set beside it as a pair: ``[(span, resource_attributes), ...]``."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        spans = []
        for path, body in self.requests:
            if path != "/v1/traces":
                continue
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    spans += [(span, resource) for span in scope_spans.spans]
        return spans

    def metrics(self) -> dict[str, list]:
        """Every metric received, by name: its histogram data points."""
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        metrics: dict[str, list] = {}
        for path, body in self.requests:
            if path != "/v1/metrics":
                continue
            request = ExportMetricsServiceRequest.FromString(body)
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        entry = metrics.setdefault(metric.name, [])
                        entry += [(metric, point) for point in metric.histogram.data_points]
        return metrics


def value(any_value):
    """An OTLP AnyValue as Python: arrays as lists."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def attributes(key_values) -> dict:
    return {kv.key: value(kv.value) for kv in key_values}
