"""Recorded interactions as sources: VCR cassettes (YAML or JSON) and httprr traces.

Each holds requests and their responses; ``choose`` picks the one to analyse (the
only one, or ``interaction N``) and makes its response body a ``Source``.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

from .events import Read, Source, SourceError, WireError

_CASSETTE_KEYS = ("interactions", "http_interactions")
_GEMINI_MODEL = re.compile(r"/models/([^/:?]+)")
_STREAM_STARTS = (b"data:", b"event:", b"id:", b"retry:", b":")
STREAM_CONTENT_TYPES = ("text/event-stream", "application/x-ndjson", "application/jsonl")


@dataclass(frozen=True)
class _Interaction:
    method: str | None
    url: str | None
    request_body: bytes | None
    status: int | None
    headers: dict[str, str]
    """Response headers, names in lower case."""
    body: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def streamed(self) -> bool:
        """Whether the response is a stream: its type says so, or its body, or the request."""
        kind = (self.content_type or "").split(";")[0].strip().lower()
        if kind in STREAM_CONTENT_TYPES:
            return True
        if self.body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(_STREAM_STARTS):
            return True
        if self.url and ":streamGenerateContent" in self.url:  # Gemini's JSON-array stream
            return True
        request = _json_object(self.request_body)
        return bool(request and request.get("stream") is True)


def choose(name: str, interactions: list[_Interaction], number: int | None) -> Source:
    """The interaction numbered ``number`` (from 1), else the first that streamed."""
    total = len(interactions)
    if not total:
        raise SourceError(f"{name}: the recording holds no interactions")
    if number is not None:
        if not 1 <= number <= total:
            raise SourceError(f"{name}: no interaction {number}: it holds {total} (1 to {total})")
        chosen = number
    else:
        chosen = next((i for i, x in enumerate(interactions, 1) if x.streamed()), 0)
        if not chosen:
            raise SourceError(
                f"{name}: none of its {total} interaction{'s' if total != 1 else ''} streamed "
                "(choose one with --interaction N)"
            )
    x = interactions[chosen - 1]
    body = _decompressed(name, x)
    return Source(
        name=f"{name} (interaction {chosen} of {total})",
        kind="cassette",
        reads=(Read(None, body),) if body else (),
        timed=False,
        url=x.url,
        method=x.method,
        model=_request_model(x),
        status=x.status,
        content_type=x.content_type,
    )


def _decompressed(name: str, x: _Interaction) -> bytes:
    """The body as the client read it: a recorder may keep the gzip bytes on the wire."""
    encoding = x.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return x.body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise SourceError(
            f"{name}: the response body is {encoding}-encoded, which inspect cannot read"
        )
    # wbits 47: a gzip or zlib header, whichever it is; -15: deflate without one.
    for wbits in (47, -15) if encoding == "deflate" else (47,):
        try:
            return zlib.decompress(x.body, wbits)
        except zlib.error:
            pass
    return x.body  # the recorder decoded it and kept the header


def _request_model(x: _Interaction) -> str | None:
    request = _json_object(x.request_body)
    model = request.get("model") if request else None
    if isinstance(model, str) and model:
        return model
    found = _GEMINI_MODEL.search(x.url or "")
    return found.group(1) if found else None


def _json_object(body: bytes | None) -> dict | None:
    if not body or body.lstrip()[:1] != b"{":
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _without_query(url: Any) -> str | None:
    # A URL can carry a key (Gemini's ?key=): never keep the query.
    return url.split("?", 1)[0].split("#", 1)[0] if isinstance(url, str) else None


def cassette_interactions(name: str, data: bytes) -> list[_Interaction]:
    """Every interaction of a vcrpy / pytest-recording cassette (YAML or JSON) or a
    Ruby VCR one; bodies as bytes, whether stored as text or binary."""
    import yaml  # PyYAML: llm depends on it

    try:
        document = yaml.load(data, Loader=_cassette_loader())
    except yaml.YAMLError as ex:
        mark = getattr(ex, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(ex, "problem", None) or "invalid YAML"
        raise SourceError(f"{name}: not a readable cassette{where}: {problem}") from None
    entries = None
    if isinstance(document, dict):
        entries = next((document[k] for k in _CASSETTE_KEYS if k in document), None)
    if not isinstance(entries, list):
        raise SourceError(f"{name}: not a cassette (no list of interactions)")
    interactions = []
    for number, entry in enumerate(entries, 1):
        request = entry.get("request") if isinstance(entry, dict) else None
        response = entry.get("response") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise SourceError(f"{name}: interaction {number} has no request and response")
        interactions.append(
            _Interaction(
                method=request.get("method") if isinstance(request.get("method"), str) else None,
                url=_without_query(request.get("uri")),
                request_body=_cassette_body(request.get("body")),
                status=_cassette_status(response),
                headers=_cassette_headers(response.get("headers")),
                body=_cassette_body(response.get("body", response.get("content"))) or b"",
            )
        )
    return interactions


def _cassette_loader() -> Any:
    """PyYAML's safe loader (its C one when built), also reading Ruby VCR's ``!binary``
    (base64 bytes, as older Ruby wrote them) like ``!!binary``."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class CassetteLoader(base):  # type: ignore[valid-type,misc]
        pass

    CassetteLoader.add_constructor("!binary", base.construct_yaml_binary)
    return CassetteLoader


def _cassette_body(body: Any) -> bytes | None:
    """A recorded body: text, ``!!binary`` bytes, or a mapping holding one
    (vcrpy ``{string: ...}``, Ruby VCR ``{encoding, string}`` or ``{base64_string}``)."""
    if isinstance(body, dict):
        if "base64_string" in body:
            import base64

            try:
                return base64.b64decode(body["base64_string"])
            except (TypeError, ValueError):
                return None
        body = body.get("string")
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    return None


def _cassette_status(response: dict) -> int | None:
    status = response.get("status", response.get("status_code"))
    if isinstance(status, dict):
        status = status.get("code")
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def _cassette_headers(headers: Any) -> dict[str, str]:
    """Header names in lower case, each with its (first) value; lists as vcrpy keeps them."""
    found: dict[str, str] = {}
    if not isinstance(headers, dict):
        return found
    for key, value in headers.items():
        if isinstance(value, list):
            value = value[0] if value else ""
        found.setdefault(str(key).lower(), str(value))
    return found


def httprr_interactions(name: str, data: bytes) -> list[_Interaction]:
    """The records of a Go httprr trace: ``httprr trace v1``, then per record a line
    ``N1 N2`` and N1 bytes of request, N2 bytes of response, as HTTP/1.1 sends them."""
    rest = data.split(b"\n", 1)[1] if b"\n" in data else b""
    interactions: list[_Interaction] = []
    while rest:
        record = len(interactions) + 1
        line, _, rest = rest.partition(b"\n")
        sizes = line.strip().split()
        if len(sizes) != 2 or not all(s.isdigit() for s in sizes):
            raise SourceError(f"{name}: not a readable httprr trace (record {record})")
        n1, n2 = int(sizes[0]), int(sizes[1])
        if n1 + n2 > len(rest):
            raise SourceError(f"{name}: the httprr trace ends inside record {record}")
        request, response, rest = rest[:n1], rest[n1 : n1 + n2], rest[n1 + n2 :]
        interactions.append(_httprr_interaction(name, request, response))
    return interactions


def _httprr_interaction(name: str, request: bytes, response: bytes) -> _Interaction:
    from .http1 import parse_response

    request_head, _, request_body = request.partition(b"\r\n\r\n")
    request_line, *request_fields = request_head.decode("latin-1").split("\r\n")
    method, _, target = request_line.partition(" ")
    target = target.rsplit(" ", 1)[0]
    host = next(
        (
            v.strip()
            for k, _, v in (f.partition(":") for f in request_fields)
            if k.lower() == "host"
        ),
        None,
    )
    url = target if "://" in target else (f"https://{host}{target}" if host else target)
    try:
        # The connection's end follows the response: a body without a length ends there.
        parsed = parse_response([(0, response), (0, b"")])
    except WireError as ex:
        raise SourceError(f"{name}: a recorded response that is not HTTP: {ex}") from None
    if parsed.error is not None:
        raise SourceError(f"{name}: {parsed.error}")
    # De-chunked and decompressed already: its framing headers no longer apply.
    headers = {
        k: v
        for k, v in parsed.headers
        if k not in ("content-encoding", "transfer-encoding", "content-length")
    }
    return _Interaction(
        method=method or None,
        url=_without_query(url),
        request_body=request_body,
        status=parsed.status,
        headers=headers,
        body=parsed.body_bytes,
    )
