"""The streamscope simulator: a loopback server speaking OpenAI's (chat completions and
Responses), Anthropic's, Gemini's and Ollama's streaming formats, and the ``streamscope-sim`` model.

* :mod:`.server` - :class:`SimServer`, :func:`get_server`, the OpenAI chat.completions route.
* :mod:`.anthropic` - the Anthropic Messages route (``POST /v1/messages``).
* :mod:`.gemini` - the Gemini route (``POST /v1beta/models/{model}:streamGenerateContent``).
* :mod:`.responses` - the OpenAI Responses route (``POST /v1/responses``).
* :mod:`.ollama` - the Ollama routes (``POST /api/chat``, ``POST /api/generate``), NDJSON.
* :mod:`.options` - the simulator options, defined once for the model, the server and the flags.
* :mod:`.engine` - what every format shares: pacing, stalls, drops, send logs, tool-call arguments.
* :mod:`.profiles` - how a provider cuts and paces a stream (pure, seeded).
* :mod:`.model` - :class:`SimChat` and :class:`AsyncSimChat`, llm's real OpenAI Chat models
  aimed at the server.

Run ``python -m llm_streamscope.sim`` for a standalone server (benchmarks).
Importing this package imports nothing heavy.
"""
