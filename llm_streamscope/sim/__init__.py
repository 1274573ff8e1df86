"""The streamscope simulator: a loopback OpenAI-compatible server and the ``streamscope-sim`` model.

* :mod:`.server` - :class:`SimServer`, :func:`get_server`, send logs.
* :mod:`.profiles` - how a provider cuts and paces a stream (pure, seeded).
* :mod:`.model` - :class:`SimChat`, llm's real OpenAI Chat model aimed at the server.

Run ``python -m llm_streamscope.sim`` for a standalone server (benchmarks).
Importing this package imports nothing heavy.
"""
