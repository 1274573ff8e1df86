"""The streamscope simulator: a loopback server speaking OpenAI's and Anthropic's streaming
formats, and the ``streamscope-sim`` model.

* :mod:`.server` - :class:`SimServer`, :func:`get_server`, the OpenAI chat.completions route.
* :mod:`.anthropic` - the Anthropic Messages route (``POST /v1/messages``).
* :mod:`.engine` - what both share: the simulator options, pacing, stalls, drops, send logs.
* :mod:`.profiles` - how a provider cuts and paces a stream (pure, seeded).
* :mod:`.model` - :class:`SimChat`, llm's real OpenAI Chat model aimed at the server.

Run ``python -m llm_streamscope.sim`` for a standalone server (benchmarks).
Importing this package imports nothing heavy.
"""
