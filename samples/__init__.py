"""Texts the streamscope simulator streams (``-o text NAME``: NAME is a file stem)."""
