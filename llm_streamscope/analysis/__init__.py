"""Analysis: trace types, encodings, alignment, stats, clocks, whatif: pure, no I/O, no threads."""
