"""The streamscope simulator: a loopback server speaking OpenAI's (chat completions and
Responses), Anthropic's, Gemini's and Ollama's streaming formats, and the ``streamscope-sim`` model.

* :mod:`.server` - :class:`SimServer`, :func:`get_server`: hands each POST to its route.
* :mod:`.routing` - what every route is handed, and ``@route``, which registers a route.
* :mod:`.chat` - the OpenAI chat completions route (``POST /v1/chat/completions``).
* :mod:`.anthropic` - the Anthropic Messages route (``POST /v1/messages``).
* :mod:`.gemini` - the Gemini route (``POST /v1beta/models/{model}:streamGenerateContent``).
* :mod:`.responses` - the OpenAI Responses route (``POST /v1/responses``).
* :mod:`.ollama` - the Ollama routes (``POST /api/chat``, ``POST /api/generate``), NDJSON.
* :mod:`.replay` - a captured stream served again (``llm streamscope serve --replay``).
* :mod:`.options` - the simulator options, defined once for the model, the server and the flags.
* :mod:`.engine` - what every format shares: pacing, stalls, drops, send logs, tool-call arguments.
* :mod:`.profiles` - how a provider cuts and paces a stream (pure, seeded).
* :mod:`.model` - :class:`SimChat` and :class:`AsyncSimChat`, llm's real OpenAI Chat models
  aimed at the server.

Run ``llm streamscope serve`` (or ``python -m llm_streamscope.sim``, the same command) for a
standalone server: :mod:`llm_streamscope.serving`.
Importing this package imports nothing heavy.
"""
