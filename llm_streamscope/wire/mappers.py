"""One mapper per provider format: what each event carried, as labels and ``Piece``s.

A mapper reads one stream's events in order (``Mapper.map_all``) and says, per
event, what it carried: the pieces of model output llm's plugin would yield from
it, and what else it was (a role, usage, a finish, a signature...). Each mapper
reads only the fields named here and calls anything it does not know ``other``,
so a new event type never stops decoding. What does not fit is said, not dropped
in silence: an event that is not of the format, or a field of the wrong type
where model text belongs (a list, a number), is a warning naming the event.

- ``openai-chat``: chat.completions chunks (SSE, or one chunk per line as
  vercel/ai stores them). ``choices[].delta.content`` is text, ``reasoning_content``
  or ``reasoning`` reasoning, ``tool_calls[]`` a name and argument deltas, each
  choice of ``n>1`` kept apart; usage wherever it rides (a ``choices: []`` chunk,
  the last choice chunk, Groq's ``x_groq``); OpenRouter's ``reasoning_details``
  (encrypted reasoning, signatures) are named, their text being ``reasoning``'s.
- ``openai-responses``: ``response.output_text.delta``, reasoning (summary) text
  deltas, each summary part a reasoning stream of its own as the provider keeps it,
  ``response.function_call_arguments.delta``, encrypted reasoning items; usage in
  ``response.completed``.
- ``anthropic``: Messages events; ``content_block_delta`` text, thinking and
  tool input JSON, signatures and citations, ``ping``, usage from ``message_start``
  and ``message_delta``.
- ``gemini``: ``streamGenerateContent`` chunks (``alt=sse`` or the JSON array);
  text parts, ``thought`` parts as reasoning, ``functionCall`` parts, and the
  ``thoughtSignature`` any part may carry.
- ``ollama``: ``/api/chat`` (and ``/api/generate``) lines; ``message.content``,
  ``message.thinking``, usage on the ``done`` line, and ``created_at``, the
  server's own clock with nanosecond precision, kept as server times.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from .events import Event, Piece, WireError
from .payloads import error_message, json_reason, parse, rfc3339_ns, snippet

ANTHROPIC_TYPES = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "ping",
    }
)

SIGNATURE = "signature"
"""The label of an event carrying a signature of the model's reasoning (Anthropic's
``signature_delta``, Gemini's ``thoughtSignature``): opaque, no model text."""
ENCRYPTED_REASONING = "encrypted-reasoning"
"""The label of an event carrying reasoning encrypted for the provider's eyes only
(OpenAI Responses' ``encrypted_content``, OpenRouter's ``reasoning.encrypted``)."""

def format_of(payload: Any, event: str = "") -> str | None:
    """The provider format one event's JSON belongs to, or None if it tells none.

    ``event`` is the SSE ``event:`` type, when there is one.

    >>> format_of({"type": "message_start", "message": {}})
    'anthropic'
    >>> format_of({"candidates": [], "modelVersion": "gemini-2.5-flash"})
    'gemini'
    >>> format_of({"error": {"message": "Invalid API key"}}) is None
    True
    """
    kind = payload.get("type") if isinstance(payload, dict) else None
    if not isinstance(kind, str):
        kind = event
    if kind.startswith("response."):
        return "openai-responses"
    if kind in ANTHROPIC_TYPES:
        return "anthropic"
    if not isinstance(payload, dict):
        return None
    if "choices" in payload or str(payload.get("object", "")).startswith("chat.completion"):
        return "openai-chat"
    if "candidates" in payload or "usageMetadata" in payload or "modelVersion" in payload:
        return "gemini"
    if "created_at" in payload and ("message" in payload or "response" in payload):
        return "ollama"
    return None


class ProviderError(Exception):
    """An event that is the provider reporting an error: decoding stops there."""


class Mapper:
    """Maps one stream's events in order; holds what they said about the response.

    A subclass's ``map`` reads one event's JSON, adds its pieces through ``piece``
    and returns the label the event gets when it carried no piece; anything else
    it carried goes through ``carry``.
    """

    format: ClassVar[str]
    input_key: ClassVar[str]
    output_keys: ClassVar[tuple[str, ...]]
    not_details: ClassVar[tuple[str, ...]] = ()
    """Usage keys llm's plugin leaves out of the details, beside the input key."""

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.model: str | None = None
        self.usage_input: int | None = None
        self.usage_output: int | None = None
        self.usage_details: dict | None = None
        self.usage: dict[str, Any] = {}
        self.choices: set[int] = set()
        self.server_times: dict[int, int] = {}
        """Event index -> the time the server wrote into it, in ns since the epoch."""
        self.also_carried: dict[int, tuple[str, ...]] = {}
        """Event index -> what else it carried beside its label (only where it did)."""
        self.unfit: list[tuple[int, str | None]] = []
        """Events that are not of this format: index, and the format they look like."""
        self.odd: list[tuple[int, str, str]] = []
        """Fields of the wrong type where model text belongs: index, field, type."""
        self._carried: dict[int, list[str]] = {}

    def map(self, index: int, payload: dict, event: str) -> str:
        raise NotImplementedError

    def fits(self, payload: dict, event: str) -> bool:
        """Whether an event that carried nothing known is of this format all the same."""
        return format_of(payload, event) == self.format

    def map_all(self, events: list[Event]) -> tuple[list[str], WireError | None]:
        """One label per event, up to and including the first one that stops decoding
        (invalid JSON, an error the provider sent). The error has the event's offset."""
        labels: list[str] = []
        pieces = self.pieces
        carried = self._carried
        for event in events:
            if event.comment:
                labels.append("keep-alive")
                continue
            data = event.data
            if data == "[DONE]":
                labels.append("done")
                continue
            index = event.index
            before = len(pieces)
            try:
                payload = parse(data)
                if type(payload) is not dict:
                    raise TypeError
                label = self.map(index, payload, event.event)
            except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
                problem = f"invalid JSON ({json_reason(error)}): {snippet(data)}"
            except ProviderError as error:
                problem = f"the provider sent an error: {error}"
            except (AttributeError, TypeError, KeyError, IndexError):
                # A field of another type than the format's: a list where a dict belongs.
                del pieces[before:]
                carried.pop(index, None)
                self.unfit.append((index, None))
                labels.append("other")
                continue
            else:
                added = len(pieces) - before
                if added == 1 and label == "empty" and not carried:
                    labels.append(pieces[before].kind)  # the hot path: one piece, nothing else
                    continue
                if added or label != "empty" or carried:
                    label = self._label(index, label, before)
                if label in ("empty", "other") and not self.fits(payload, event.event):
                    self.also_carried.pop(index, None)
                    self.unfit.append((index, format_of(payload, event.event)))
                    label = "other"
                labels.append(label)
                continue
            del pieces[before:]
            labels.append("error")
            return labels, WireError(f"event {event.index}: {problem}", offset=event.byte_start)
        return labels, None

    def _label(self, index: int, label: str, before: int) -> str:
        """The event's label (its first piece's kind, else ``label``), and the rest of
        what it carried kept in ``also_carried``."""
        kinds = dict.fromkeys(p.kind for p in self.pieces[before:])
        if label != "empty":
            kinds[label] = None
        kinds.update(dict.fromkeys(self._carried.pop(index, ())))
        first, *rest = kinds
        if rest:
            self.also_carried[index] = tuple(rest)
        return first

    def carry(self, index: int, label: str) -> None:
        """Say that event ``index`` carried ``label`` too (usage beside text, a signature)."""
        self._carried.setdefault(index, []).append(label)

    def piece(
        self,
        index: int,
        kind: str,
        text: Any,
        tool_call_id: str | None = None,
        choice: int = 0,
        *,
        field: str,
    ) -> None:
        """Add a piece when ``text`` is a non-empty string: an empty one (or None)
        delivers nothing, and anything else is a field of the wrong type."""
        if type(text) is str:
            if text:
                self.pieces.append(Piece(index, kind, text, tool_call_id, choice))
        elif text is not None:
            self.odd_type(index, field, text)

    def odd_type(self, index: int, field: str, value: Any) -> None:
        self.odd.append((index, field, type(value).__name__))

    def take_model(self, model: Any) -> None:
        if self.model is None and isinstance(model, str) and model:
            self.model = model

    def take_usage(self, usage: Any) -> bool:
        """Merge a usage object into what earlier ones said; True if there was one.

        The totals are read as llm's plugin reads them; the details are the rest,
        as llm keeps them (``response.token_details``).
        """
        if not isinstance(usage, dict) or not usage:
            return False
        self.usage.update((k, v) for k, v in usage.items() if v is not None)
        merged = self.usage
        if isinstance(merged.get(self.input_key), int):
            self.usage_input = merged[self.input_key]
        outputs = [merged[k] for k in self.output_keys if isinstance(merged.get(k), int)]
        if outputs:
            self.usage_output = sum(outputs)
        dropped = (self.input_key, *self.not_details)
        self.usage_details = {k: v for k, v in merged.items() if k not in dropped} or None
        return True

    def warnings(self) -> list[str]:
        """What did not fit, in a line or two: events of another format, odd types."""
        lines = []
        if self.unfit:
            looks = next((f for _, f in self.unfit if f is not None), None)
            one = len(self.unfit) == 1
            lines.append(
                f"{_events(i for i, _ in self.unfit)} the {self.format} format"
                + (f" ({'it looks' if one else 'they look'} like {looks})" if looks else "")
                + f": {'it' if one else 'they'} carried nothing"
            )
        if self.odd:
            index, field, kind = self.odd[0]
            more = len(self.odd) - 1
            lines.append(
                f"event {index}: {field} is a {kind}, not text: skipped"
                + (f" (and {more:,} more such fields)" if more else "")
            )
        return lines


def _events(indices: Any, most: int = 5) -> str:
    """``event 3 does not fit`` / ``events 3, 5, … (120 in all) do not fit``.

    >>> _events(range(3, 10))
    'events 3, 4, 5, 6, 7, … (7 in all) do not fit'
    """
    shown = list(indices)
    if len(shown) == 1:
        return f"event {shown[0]} does not fit"
    listed = ", ".join(str(i) for i in shown[:most])
    if len(shown) > most:
        listed += f", \u2026 ({len(shown):,} in all)"
    return f"events {listed} do not fit"


class OpenAIChat(Mapper):
    """OpenAI chat.completions chunks (and the many APIs that copy them)."""

    format = "openai-chat"
    input_key = "prompt_tokens"
    output_keys = ("completion_tokens",)
    not_details = ("completion_tokens", "total_tokens")

    def __init__(self) -> None:
        super().__init__()
        self.call_ids: dict[tuple[int, int], str] = {}
        """(choice, tool call index) -> the call's id: later deltas carry only the index."""

    def map(self, index: int, payload: dict, event: str) -> str:
        # The hot path of a long stream: one chunk per token, so nothing here is
        # done twice and a text delta costs three dict lookups past the JSON.
        if payload.get("error"):
            raise ProviderError(error_message(payload))
        if self.model is None:
            self.take_model(payload.get("model"))
        label = "empty"
        for choice in payload.get("choices") or ():
            n = choice.get("index") or 0
            if type(n) is not int:
                raise TypeError("a choice index is a number")
            self.choices.add(n)
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                self.piece(index, "reasoning", reasoning, None, n, field="delta.reasoning")
            details = delta.get("reasoning_details")
            if details:
                named = self.reasoning_details(details)
                if named is not None:  # before a role: OpenRouter sends one in every chunk
                    if label in ("empty", "role"):
                        label = named
                    else:
                        self.carry(index, named)
            calls = delta.get("tool_calls")
            if calls:
                for call in calls:
                    self.tool_call(index, n, call)
            content = delta.get("content")
            if type(content) is str:
                if content:
                    self.pieces.append(Piece(index, "text", content, None, n))
            elif content is not None:
                self.odd_type(index, "delta.content", content)
            if choice.get("finish_reason"):
                if label not in ("empty", "role"):
                    self.carry(index, label)
                label = "finish"
            elif label == "empty" and delta.get("role"):
                label = "role"
        usage = payload.get("usage")
        if usage is None and "x_groq" in payload:  # Groq's usage rides in its own block
            usage = payload["x_groq"].get("usage")
        if usage and self.take_usage(usage):  # in a chunk of its own, or beside a finish
            if label == "empty":
                label = "usage"
            else:
                self.carry(index, "usage")
        return label

    @staticmethod
    def reasoning_details(details: list) -> str | None:
        """What OpenRouter's ``reasoning_details`` carried that is not text (their
        text is ``reasoning``'s again): encrypted reasoning, a signature, or None."""
        for detail in details:
            if not isinstance(detail, dict):
                continue
            if detail.get("type") == "reasoning.encrypted":
                return ENCRYPTED_REASONING
            if detail.get("signature"):
                return SIGNATURE
        return None

    def tool_call(self, index: int, choice: int, call: dict) -> None:
        key = (choice, call.get("index") or 0)
        function = call.get("function") or {}
        call_id = self.call_ids.get(key)
        if call_id is None:
            # A call without an id still needs a stream of its own.
            call_id = self.call_ids[key] = call.get("id") or f"call-{choice}-{key[1]}"
            name = function.get("name")
            self.piece(index, "tool_call_name", name, call_id, choice, field="function.name")
        args = function.get("arguments")
        self.piece(index, "tool_call_args", args, call_id, choice, field="function.arguments")


_RESPONSES_DELTAS = {
    "response.output_text.delta": "text",
    "response.reasoning_summary_text.delta": "reasoning",
    "response.reasoning_text.delta": "reasoning",
}


class OpenAIResponses(Mapper):
    """OpenAI Responses API events, told apart by ``type``."""

    format = "openai-responses"
    input_key = "input_tokens"
    output_keys = ("output_tokens",)
    not_details = ("output_tokens", "total_tokens")

    def __init__(self) -> None:
        super().__init__()
        self.summary_parts: dict[tuple[Any, Any], str] = {}
        """(reasoning item id, summary index) -> the stream its text goes to."""

    def map(self, index: int, payload: dict, event: str) -> str:
        kind = payload.get("type") or event
        delta_kind = _RESPONSES_DELTAS.get(kind)
        if delta_kind is not None:
            stream = None
            if "summary_index" in payload:  # each summary part is a text of its own
                stream = self.summary_stream(payload)
            self.piece(index, delta_kind, payload.get("delta"), stream, field="delta")
            return "empty"
        if kind == "response.function_call_arguments.delta":
            delta = payload.get("delta")
            self.piece(index, "tool_call_args", delta, payload.get("item_id"), field="delta")
            return "empty"
        if kind in ("response.output_item.added", "response.output_item.done"):
            item = payload.get("item") or {}
            if item.get("type") == "function_call" and kind.endswith(".added"):
                name = item.get("name")
                self.piece(index, "tool_call_name", name, item.get("id"), field="item.name")
            elif item.get("type") == "reasoning" and item.get("encrypted_content"):
                return ENCRYPTED_REASONING
            return "other"
        if kind in ("error", "response.failed"):
            raise ProviderError(error_message(payload.get("response") or payload))
        response = payload.get("response") or {}
        self.take_model(response.get("model"))
        if kind in ("response.created", "response.in_progress"):
            return "start"
        if kind in ("response.completed", "response.incomplete"):
            return "usage" if self.take_usage(response.get("usage")) else "stop"
        return "other"

    def summary_stream(self, payload: dict) -> str:
        """The reasoning stream of one summary part: ``summary 1``, ``summary 2``, ...
        in the order the parts began. The provider keeps the parts apart (a list in
        the reasoning item), each a paragraph under its own bold title: laid end to
        end they would run one title into the last sentence before it."""
        key = (payload.get("item_id"), payload.get("summary_index"))
        stream = self.summary_parts.get(key)
        if stream is None:
            stream = self.summary_parts[key] = f"summary {len(self.summary_parts) + 1}"
        return stream


class Anthropic(Mapper):
    """Anthropic Messages events, told apart by ``type``."""

    format = "anthropic"
    input_key = "input_tokens"
    output_keys = ("output_tokens",)
    not_details = ("output_tokens",)

    def __init__(self) -> None:
        super().__init__()
        self.tool_ids: dict[Any, str | None] = {}
        """Content block index -> its tool use id: the input deltas carry only the index."""

    def fits(self, payload: dict, event: str) -> bool:
        # Any typed event of another name is a type Anthropic added since: "other".
        kind = payload.get("type") or event
        return isinstance(kind, str) and format_of(payload, event) in (None, self.format)

    def map(self, index: int, payload: dict, event: str) -> str:
        kind = payload.get("type") or event
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                self.piece(index, "text", delta.get("text"), field="delta.text")
            elif delta_type == "thinking_delta":
                self.piece(index, "reasoning", delta.get("thinking"), field="delta.thinking")
            elif delta_type == "input_json_delta":
                tool_id = self.tool_ids.get(payload.get("index"))
                args = delta.get("partial_json")
                self.piece(index, "tool_call_args", args, tool_id, field="delta.partial_json")
            elif delta_type == "signature_delta":
                return SIGNATURE
            elif delta_type == "citations_delta":
                return "citation"
            else:
                return "other"
            return "empty"
        if kind == "content_block_start":
            block = payload.get("content_block") or {}
            block_type = block.get("type")
            if block_type in ("tool_use", "server_tool_use", "mcp_tool_use"):
                self.tool_ids[payload.get("index")] = block.get("id")
                name = block.get("name")
                self.piece(index, "tool_call_name", name, block.get("id"), field="name")
            elif block_type == "redacted_thinking":
                return ENCRYPTED_REASONING
            return "other"
        if kind == "ping":
            return "ping"
        if kind == "message_start":
            message = payload.get("message") or {}
            self.take_model(message.get("model"))
            self.take_usage(message.get("usage"))
            return "start"
        if kind == "message_delta":
            return "usage" if self.take_usage(payload.get("usage")) else "other"
        if kind == "message_stop":
            return "stop"
        if kind == "error":
            raise ProviderError(error_message(payload))
        return "other"


class Gemini(Mapper):
    """Gemini ``streamGenerateContent`` chunks; llm-gemini reads the first candidate."""

    format = "gemini"
    input_key = "promptTokenCount"
    output_keys = ("candidatesTokenCount", "thoughtsTokenCount")
    not_details = ("totalTokenCount",)

    def map(self, index: int, payload: dict, event: str) -> str:
        if payload.get("error"):
            raise ProviderError(error_message(payload))
        self.take_model(payload.get("modelVersion"))
        candidates = payload.get("candidates") or ()
        if candidates:
            candidate = candidates[0]
            for k, part in enumerate((candidate.get("content") or {}).get("parts") or ()):
                call = part.get("functionCall")
                if call is not None:
                    call_id = call.get("id") or f"call-{index}-{k}"
                    name = call.get("name")
                    self.piece(index, "tool_call_name", name, call_id, field="functionCall.name")
                    args = json.dumps(call.get("args") or {})
                    self.piece(index, "tool_call_args", args, call_id, field="functionCall.args")
                else:
                    kind = "reasoning" if part.get("thought") else "text"
                    self.piece(index, kind, part.get("text"), field="parts[].text")
                if part.get("thoughtSignature"):
                    self.carry(index, SIGNATURE)
            if candidate.get("finishReason"):
                self.carry(index, "finish")
        if self.take_usage(payload.get("usageMetadata")):  # in every chunk, as Gemini sends it
            self.carry(index, "usage")
        return "empty"


_OLLAMA_USAGE = (
    "prompt_eval_count",
    "eval_count",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)


class Ollama(Mapper):
    """Ollama ``/api/chat`` lines (``/api/generate``'s ``response`` too)."""

    format = "ollama"
    input_key = "prompt_eval_count"
    output_keys = ("eval_count",)
    not_details = ("eval_count",)

    def map(self, index: int, payload: dict, event: str) -> str:
        if payload.get("error"):
            raise ProviderError(error_message(payload))
        self.take_model(payload.get("model"))
        message = payload.get("message") or payload
        self.piece(index, "reasoning", message.get("thinking"), field="message.thinking")
        text = message.get("content", payload.get("response"))
        self.piece(index, "text", text, field="message.content")
        for k, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            call_id = call.get("id") or f"call-{index}-{k}"
            name = function.get("name")
            self.piece(index, "tool_call_name", name, call_id, field="function.name")
            args = json.dumps(function.get("arguments") or {})
            self.piece(index, "tool_call_args", args, call_id, field="function.arguments")
        created = rfc3339_ns(payload.get("created_at"))
        if created is not None:
            self.server_times[index] = created
        if payload.get("done"):
            self.take_usage({k: payload[k] for k in _OLLAMA_USAGE if k in payload})
            return "usage"
        return "empty"


MAPPERS: dict[str, type[Mapper]] = {
    mapper.format: mapper for mapper in (OpenAIChat, OpenAIResponses, Anthropic, Gemini, Ollama)
}
