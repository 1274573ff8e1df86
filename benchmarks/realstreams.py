"""What streamscope finds on real provider streams: the per-provider table of docs/wire.md.

    python benchmarks/realstreams.py                  # ../shared/realstreams beside the repo
    python benchmarks/realstreams.py DIR --files      # another folder; one row per file too
    python benchmarks/realstreams.py --profiles       # and the simulator's profiles beside them

Each recording (see its PROVENANCE.md; the data is never copied into the project)
is decoded with ``wire.formats.decode``, its text pieces become one Trace per
choice, and the trace is aligned with the model's tiktoken encoding (o200k_base,
marked ~, where the model's own tokenizer is not tiktoken's). Per provider (the
file-name prefix), summed over its files:

- tokens/chunk: BPE tokens of the text over text chunks (non-empty content pieces);
- on boundary: % of text chunks whose last byte ends a token;
- events/fragment: every event on the wire (SSE events and comments, NDJSON lines,
  array elements) over the fragments llm would yield (pieces of every kind);
- wire B/content B: body bytes over the UTF-8 bytes of the text;
- framing B/text event: the bytes of the events that carry text, beside the
  text, per such event (``whatif.measured_framing``: the documented framing
  ``whatif`` counts for a trace without a wire record);
- usage tok/chunk: the provider's own output token count over the chunks, where it
  gives one and no reasoning hides inside it (reasoning tokens subtracted).

``--profiles`` adds what the simulator's profiles are calibrated against: each
profile's chunking of the sample texts (prose, code, multilingual; seed 1) in the
same columns, then the gaps between chunks in the recordings that carry times
(Ollama's ``created_at``, the cookbook's receive times, 10 ms resolution) beside
each profile's gaps (5,000, seed 1) and TTFT (median over seeds 0-199).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from llm_streamscope.analysis import encodings  # noqa: E402
from llm_streamscope.analysis.align import align  # noqa: E402
from llm_streamscope.analysis.stats import reasoning_tokens  # noqa: E402
from llm_streamscope.analysis.trace import Fragment, Trace  # noqa: E402
from llm_streamscope.analysis.whatif import measured_framing  # noqa: E402
from llm_streamscope.capture.tokenizer import LocalTokenizer  # noqa: E402
from llm_streamscope.wire.events import Read  # noqa: E402
from llm_streamscope.wire.formats import decode  # noqa: E402

STREAM_SUFFIXES = (".sse", ".ndjson", ".jsonl")


@dataclass
class Counts:
    """Sums over one file, or over every file of a provider."""

    files: int = 0
    chunks: int = 0
    """Text chunks: non-empty content pieces, every choice."""
    tokens: int = 0
    on_boundary: int = 0
    events: int = 0
    fragments: int = 0
    body_bytes: int = 0
    content_bytes: int = 0
    text_events: int = 0
    framing_bytes: int = 0
    """Bytes of the events that carry text, beside the text (``measured_framing``)."""
    usage_tokens: int = 0
    usage_chunks: int = 0
    """Chunks of the files whose usage is counted in ``usage_tokens``."""
    approximate: bool = False
    """Some file's encoding stands in for a tokenizer tiktoken does not have."""

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            if name == "approximate":
                self.approximate |= other.approximate
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))


def find_realstreams() -> Path | None:
    for place in (HERE.parent.parent / "shared" / "realstreams", Path("/work/shared/realstreams")):
        if (place / "PROVENANCE.md").is_file():
            return place
    return None


def measure(path: Path) -> tuple[Counts, str]:
    """One recording's counts, and the encoding its text was aligned with."""
    decoded = decode([Read(None, path.read_bytes())])
    if decoded.error is not None:
        raise SystemExit(f"{path.name}: {decoded.error}")
    name, exact = encodings.encoding_for_model(SimpleNamespace(model_id=decoded.model or ""))
    if not encodings.ships_offline(name):
        name, exact = encodings.DEFAULT_ENCODING, False
    tokenizer = LocalTokenizer(encodings.get_encoding(name))
    counts = Counts(
        files=1,
        events=len(decoded.events),
        fragments=len(decoded.pieces),
        body_bytes=decoded.body_bytes,
        approximate=not exact,
    )
    framing = measured_framing(decoded)
    if framing is not None:
        counts.text_events = framing.events
        counts.framing_bytes = round(framing.per_event * framing.events)
    for choice in decoded.choices:
        texts = [p.text for p in decoded.pieces if p.kind == "text" and p.choice == choice]
        add_chunks(counts, texts, tokenizer, f"{path.name}#{choice}", decoded.model or "", exact)
    if decoded.usage_output is not None:
        counts.usage_tokens = decoded.usage_output - (reasoning_tokens(decoded.usage_details) or 0)
        counts.usage_chunks = counts.chunks
    return counts, name + ("" if exact else "~")


def add_chunks(
    counts: Counts,
    texts: list[str],
    tokenizer: LocalTokenizer,
    trace_id: str,
    model: str,
    exact: bool,
) -> None:
    """Align one stream's text chunks and add them to ``counts``."""
    fragments = tuple(Fragment(i, "text", text, 0) for i, text in enumerate(texts))
    trace = Trace(
        id=trace_id,
        model_id=model,
        encoding_name=tokenizer.name,
        encoding_exact=exact,
        prompt=None,
        system=None,
        started_utc="",
        fragments=fragments,
    )
    stream = align(trace, tokenizer).stream("text")
    if stream is None:
        return
    counts.chunks += len(fragments)
    counts.tokens += stream.token_count
    counts.on_boundary += stream.fragment_ends_mid_token.count(False)
    counts.content_bytes += len(stream.text.encode())


PROFILE_SAMPLES = ("prose", "code", "multilingual")


def profile_rows() -> list[list[str]]:
    """Each simulator profile's chunking of the sample texts, in the recordings' columns."""
    from llm_streamscope.sim import profiles, texts

    tokenizer = LocalTokenizer(encodings.get_encoding(texts.ENCODING_NAME))
    rows = []
    for name, profile in profiles.PROFILES.items():
        counts = Counts(files=len(PROFILE_SAMPLES))
        for sample in PROFILE_SAMPLES:
            chunks = profile.cut(texts.sample_text(sample), seed=1)
            add_chunks(counts, chunks, tokenizer, f"{name}:{sample}", name, True)
        cells = row(name, counts, texts.ENCODING_NAME)
        cells[-3:] = [
            "-",
            "-",
            "-",
        ]  # no wire: framing and usage are the formats', not the profile's
        rows.append(cells)
    return rows


def gap_cells(label: str, gaps_ms: list[float], ttft_ms: float | None) -> list[str]:
    gaps = sorted(gaps_ms)
    n = len(gaps)

    def at(q: float) -> str:
        return f"{gaps[min(n - 1, int(q * n))]:.1f}"

    over = 100 * sum(g > 50 for g in gaps) / n
    ttft = "-" if ttft_ms is None else f"{ttft_ms:.0f}"
    mean = statistics.fmean(gaps)
    return [label, str(n), at(0.1), at(0.5), at(0.9), at(0.99), f"{mean:.1f}", f"{over:.1f}%", ttft]


def timing_rows(folder: Path) -> list[list[str]]:
    """The gaps of the recordings that carry times, then each profile's."""
    from llm_streamscope.sim import profiles

    rows = []
    for path in sorted(folder.glob("ollama_*.ndjson")):
        decoded = decode([Read(None, path.read_bytes())])
        times = [t for t in decoded.server_times_ns or () if t is not None]
        gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(times)]
        details = decoded.usage_details or {}
        ttft = (details.get("load_duration", 0) + details.get("prompt_eval_duration", 0)) / 1e6
        rows.append(gap_cells(path.name, gaps, ttft or None))
    for path in sorted(folder.glob("timing_*.tsv")):
        lines = path.read_text().splitlines()
        seconds = [float(line.split("\t")[1]) for line in lines[3:] if line.strip()]
        gaps = [(b - a) * 1000 for a, b in itertools.pairwise(seconds)]
        rows.append(gap_cells(path.name, gaps, seconds[0] * 1000))
    for name, profile in profiles.PROFILES.items():
        gaps = [g * 1000 for g in profile.gaps(5000, seed=1)]
        ttft = statistics.median(profile.ttft(seed) * 1000 for seed in range(200))
        rows.append(gap_cells(name, gaps, ttft))
    return rows


TIMING_COLUMNS = ("gaps", "p10 ms", "p50 ms", "p90 ms", "p99 ms", "mean ms", "> 50 ms", "TTFT ms")


def ratio(top: int, bottom: int, digits: int = 2) -> str:
    return f"{top / bottom:.{digits}f}" if bottom else "-"


COLUMNS = (
    "files",
    "chunks",
    "tokens/chunk",
    "on boundary",
    "events/fragment",
    "wire B/content B",
    "framing B/text event",
    "usage tok/chunk",
)


def row(label: str, counts: Counts, encoding: str) -> list[str]:
    return [
        label,
        encoding,
        str(counts.files),
        str(counts.chunks),
        ratio(counts.tokens, counts.chunks),
        f"{ratio(100 * counts.on_boundary, counts.chunks, 1)}%" if counts.chunks else "-",
        ratio(counts.events, counts.fragments),
        ratio(counts.body_bytes, counts.content_bytes, 1),
        ratio(counts.framing_bytes, counts.text_events, 1),
        ratio(counts.usage_tokens, counts.usage_chunks),
    ]


def table(
    title: str, rows: list[list[str]], columns: tuple[str, ...] = ("encoding", *COLUMNS)
) -> str:
    header = [title, *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, help="default: ../shared/realstreams")
    parser.add_argument("--files", action="store_true", help="a row per file as well")
    parser.add_argument(
        "--profiles", action="store_true", help="the simulator's profiles beside the recordings"
    )
    args = parser.parse_args(argv)
    folder = args.folder or find_realstreams()
    if folder is None or not folder.is_dir():
        print("no realstreams folder found (give one)", file=sys.stderr)
        return 1
    paths = sorted(p for p in folder.iterdir() if p.name.endswith(STREAM_SUFFIXES))
    providers: dict[str, Counts] = {}
    encodings_used: dict[str, set[str]] = {}
    file_rows = []
    for path in paths:
        counts, encoding = measure(path)
        provider = path.name.split("_")[0]
        providers.setdefault(provider, Counts()).add(counts)
        encodings_used.setdefault(provider, set()).add(encoding)
        file_rows.append(row(path.name, counts, encoding))
    total = Counts()
    for counts in providers.values():
        total.add(counts)
    rows = [
        row(provider, counts, ", ".join(sorted(encodings_used[provider])))
        for provider, counts in providers.items()
    ]
    rows.append(row("all", total, ""))
    print(table("provider", rows))
    if args.files:
        print()
        print(table("file", file_rows))
    if args.profiles:
        print()
        print(table("simulator profile", profile_rows()))
        print()
        print(table("source", timing_rows(folder), TIMING_COLUMNS))
    print()
    print("~ the model's tokenizer is not tiktoken's: o200k_base stands in for it.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
