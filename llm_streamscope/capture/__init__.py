"""Capture: llm's run timed as it arrives, the tokenizer process, wire matching, signals."""
