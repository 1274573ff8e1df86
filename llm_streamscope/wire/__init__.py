"""The wire: a stream as the provider sent it, underneath llm.

Bytes come in as timed ``Read``s (from a file, stdin, a cassette, or the socket
reads of a live request); a decoder (``sse``, ``ndjson``, ``jsonarray``) splits
them into ``Event``s, each timed by the arrival of its last byte; a provider
mapper (``formats``) turns events into ``Piece``s, the same kinds of fragment
llm yields. Everything here is pure but ``tap`` (the live socket-read tap) and
``sources`` (reading files and stdin).
"""

FORMATS = ("openai-chat", "openai-responses", "anthropic", "gemini", "ollama")
"""The provider formats ``formats.decode`` maps. Here, not in ``formats``, so that the
CLI can offer them without importing the decoders (``llm --help`` pays for nothing)."""

FORMAT_ALIASES = {"openai": "openai-chat", "responses": "openai-responses"}
"""Older ``--format`` spellings (``serve``'s), still accepted for the names above."""
