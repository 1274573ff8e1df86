"""The tokenizer process that also draws the live view: ``python -m`` this module.

The tokenizer (``capture.tokenizer``) knows no view; this host hands it the
renderer, so the live view is drawn in the process that holds the encoding.
"""

from ..capture import tokenizer
from .liveview import LiveRenderer

MODULE = "llm_streamscope.views.livehost"
"""What ``TokenizerProcess(..., live_host=MODULE)`` runs."""

if __name__ == "__main__":
    tokenizer.main(live_renderer=LiveRenderer)
