"""Offline tiktoken encodings: cache seeding, in-memory fallback, model mapping.

Every test that checks offline behaviour blocks tiktoken's downloads, so a pass proves that
no download was even attempted. Real loads cost 0.2-0.5 s each, so few tests do one.
"""

import gzip
import hashlib
import os
import tempfile
import threading
import time
from types import SimpleNamespace

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
from llm.default_plugins.openai_models import Chat

from llm_streamscope.analysis import encodings
from llm_streamscope.analysis.encodings import (
    DEFAULT_ENCODING,
    OFFLINE_ENCODINGS,
    EncodingError,
    encoding_for_model,
    get_encoding,
    seed_cache,
)

# Known values, written out so the tests check the module against tiktoken, not against itself.
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_HASH = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_KEY = hashlib.sha1(CL100K_URL.encode()).hexdigest()
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_KEY = hashlib.sha1(O200K_URL.encode()).hexdigest()
TEXT = "Hello, wörld! naïve café 🙂 — 日本語のテキスト\n\tdef f(x): return x**2  # ok"


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def downloads(monkeypatch):
    """Blocks tiktoken's network reads and lists every URL it tried."""
    attempted = []
    real_read_file = tiktoken.load.read_file

    def read_file(blobpath):
        if "://" in blobpath:
            attempted.append(blobpath)
            raise ConnectionError(f"network blocked in tests: {blobpath}")
        return real_read_file(blobpath)

    monkeypatch.setattr(tiktoken.load, "read_file", read_file)
    return attempted


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh, not yet existing tiktoken cache folder."""
    path = tmp_path / "tiktoken-cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(path))
    return path


@pytest.fixture
def fresh_registry(monkeypatch):
    """tiktoken forgets the encodings it loaded, for this test only."""
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})


# ====================
# seed_cache
# ====================


def test_seed_empty_cache_writes_tiktokens_file(cache_dir, downloads):
    path = seed_cache("cl100k_base")
    assert path == cache_dir / CL100K_KEY
    assert sha256_of(path) == CL100K_HASH
    assert os.listdir(cache_dir) == [CL100K_KEY]  # no temp files left behind
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # like tiktoken's own
    # tiktoken's own cached reader finds it and does not download.
    assert tiktoken.load.read_file_cached(CL100K_URL, CL100K_HASH) == path.read_bytes()
    assert downloads == []


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("variable", ["TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR", None])
def test_seed_uses_tiktokens_cache_folder(variable, tmp_path, monkeypatch, downloads):
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    if variable:
        monkeypatch.setenv(variable, str(tmp_path / "cache"))
        expected = tmp_path / "cache" / CL100K_KEY
    else:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        expected = tmp_path / "data-gym-cache" / CL100K_KEY
    assert seed_cache("cl100k_base") == expected
    assert tiktoken.load.read_file_cached(CL100K_URL, CL100K_HASH) == expected.read_bytes()
    assert downloads == []


def test_seed_never_rewrites_a_good_file(cache_dir):
    path = seed_cache("cl100k_base")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = path.stat()
    assert seed_cache("cl100k_base") == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )


@pytest.mark.parametrize("junk", [b"not a bpe file", b""])
def test_seed_replaces_a_corrupt_file(cache_dir, junk):
    cache_dir.mkdir()
    path = cache_dir / CL100K_KEY
    path.write_bytes(junk)
    assert seed_cache("cl100k_base") == path
    assert sha256_of(path) == CL100K_HASH
    assert os.listdir(cache_dir) == [CL100K_KEY]


def test_seed_refuses_offline_data_that_fails_the_hash(cache_dir, tmp_path, monkeypatch):
    bad = tmp_path / "cl100k_base.tiktoken.gz"
    bad.write_bytes(gzip.compress(b"IQ== 0\n"))
    monkeypatch.setattr(encodings, "_data_file", lambda source: bad)
    with pytest.raises(EncodingError, match="does not match tiktoken's expected sha256"):
        seed_cache("cl100k_base")
    assert not (cache_dir / CL100K_KEY).exists()


@pytest.mark.parametrize("unusable", ["disabled", "under-a-file"])
def test_seed_returns_none_without_a_usable_cache(unusable, tmp_path, monkeypatch):
    if unusable == "disabled":
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    else:
        # chmod does not stop root; a regular file in the path makes makedirs fail for anyone.
        (tmp_path / "file").write_text("x")
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "file" / "cache"))
    assert seed_cache("o200k_base") is None


def test_seed_derived_encoding_uses_its_base_file(cache_dir):
    assert seed_cache("o200k_harmony") == seed_cache("o200k_base") == cache_dir / O200K_KEY


# ====================
# get_encoding
# ====================


def test_tiktoken_works_unmodified_after_seeding(cache_dir, downloads, fresh_registry):
    seed_cache("o200k_base")
    enc = tiktoken.encoding_for_model("gpt-4o-mini")
    assert enc.name == "o200k_base"
    assert enc.encode("hello world") == [24912, 2375]
    assert enc.decode(enc.encode(TEXT)) == TEXT
    assert tiktoken.get_encoding("o200k_base") is enc
    assert downloads == []


def test_get_encoding_is_memoized_and_shared_with_tiktoken(downloads):
    enc = get_encoding("cl100k_base")
    assert enc.encode("hello world") == [15339, 1917]
    assert get_encoding("cl100k_base") is enc
    assert tiktoken.get_encoding("cl100k_base") is enc
    assert downloads == []


@pytest.mark.parametrize("unusable", ["disabled", "under-a-file"])
def test_unusable_cache_builds_in_memory(unusable, tmp_path, monkeypatch, downloads):
    reference = get_encoding("cl100k_base")  # loaded via the session's seeded cache
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    if unusable == "disabled":
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    else:
        (tmp_path / "file").write_text("x")
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "file" / "cache"))

    enc = encodings._load("cl100k_base")

    assert enc is not reference
    assert enc.encode(TEXT, allowed_special="all") == reference.encode(TEXT, allowed_special="all")
    assert enc._mergeable_ranks == reference._mergeable_ranks
    assert enc._special_tokens == reference._special_tokens
    assert enc._pat_str == reference._pat_str
    assert enc.n_vocab == reference.n_vocab
    # Registered, so later plain tiktoken calls in the process work offline too.
    assert tiktoken.get_encoding("cl100k_base") is enc
    assert tiktoken.encoding_for_model("gpt-4") is enc
    assert downloads == []


def test_unknown_encoding_lists_known_names():
    for call in (get_encoding, seed_cache, encodings.check_encoding_name, encodings._load):
        with pytest.raises(EncodingError) as excinfo:
            call("foo")
        message = str(excinfo.value)
        assert message.startswith(
            "Unknown encoding 'foo'; known encodings: cl100k_base, gpt2, o200k_base, "
        )
        assert "p50k_base" in message
        assert "\n" not in message


def test_known_encoding_without_offline_data_fails_clearly(cache_dir, downloads):
    with pytest.raises(EncodingError) as excinfo:
        get_encoding("p50k_base")
    message = str(excinfo.value)
    assert "'p50k_base'" in message
    assert "offline" in message
    assert "o200k_base, cl100k_base" in message
    assert "ConnectionError: network blocked" in message  # the underlying reason
    assert "\n" not in message
    assert isinstance(excinfo.value.__cause__, ConnectionError)

    with pytest.raises(EncodingError, match=r"'p50k_base' has no offline data; .*o200k_base"):
        seed_cache("p50k_base")


def test_get_encoding_loads_once_when_threads_race(monkeypatch):
    calls = []
    sentinel = object()

    def slow_load(name):
        calls.append(name)
        time.sleep(0.05)
        return sentinel

    monkeypatch.setattr(encodings, "_load", slow_load)
    name = "test-race-encoding"  # unique, so the process-wide memo starts without it
    barrier = threading.Barrier(6)
    results = []

    def worker():
        barrier.wait()
        results.append(get_encoding(name))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [name]
    assert results == [sentinel] * 6


def test_offline_encodings_constants():
    assert OFFLINE_ENCODINGS == ("o200k_base", "cl100k_base")
    assert DEFAULT_ENCODING in OFFLINE_ENCODINGS
    assert set(OFFLINE_ENCODINGS) <= set(tiktoken.list_encoding_names())


# ====================
# encoding_for_model
# ====================


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("gpt-4o-mini", ("o200k_base", True)),
        ("gpt-4o", ("o200k_base", True)),
        ("gpt-4.1", ("o200k_base", True)),
        ("gpt-4.1-mini", ("o200k_base", True)),
        ("o3-mini", ("o200k_base", True)),
        ("chatgpt-4o-latest", ("o200k_base", True)),
        ("gpt-4", ("cl100k_base", True)),
        ("gpt-3.5-turbo", ("cl100k_base", True)),
        ("claude-3.5-haiku", (DEFAULT_ENCODING, False)),
        ("gemini-2.5-flash", (DEFAULT_ENCODING, False)),
        ("streamscope-sim", (DEFAULT_ENCODING, False)),
        # Provider prefixes as routers and gateways write them: as the bare name.
        ("openai/o3", ("o200k_base", True)),
        ("openai/gpt-4", ("cl100k_base", True)),
        ("azure/gpt-4", ("cl100k_base", True)),
        ("azure/gpt-4o-mini", ("o200k_base", True)),
        ("openrouter/openai/gpt-4", ("cl100k_base", True)),
        ("openrouter/openai/gpt-3.5-turbo-0125", ("cl100k_base", True)),
        ("openrouter/anthropic/claude-sonnet-4", (DEFAULT_ENCODING, False)),
        ("openai/", (DEFAULT_ENCODING, False)),
    ],
)
def test_encoding_for_model_ids(model_id, expected):
    assert encoding_for_model(SimpleNamespace(model_id=model_id)) == expected


def test_encoding_for_llm_openai_model():
    assert encoding_for_model(Chat("gpt-4o-mini")) == ("o200k_base", True)
    # An extra-openai-models.yaml alias: model_name is what the API sees.
    assert encoding_for_model(Chat("my-alias", model_name="gpt-4")) == ("cl100k_base", True)


def test_encoding_for_model_prefers_declared_then_model_name():
    declared = SimpleNamespace(model_id="gpt-4o", tiktoken_encoding="cl100k_base")
    assert encoding_for_model(declared) == ("cl100k_base", True)
    named = SimpleNamespace(model_id="gpt-4", model_name="gpt-4o")
    assert encoding_for_model(named) == ("o200k_base", True)
    unnamed = SimpleNamespace(model_id="gpt-4", model_name=None, tiktoken_encoding=None)
    assert encoding_for_model(unnamed) == ("cl100k_base", True)


def test_inspect_resolves_a_provider_prefixed_model_as_the_bare_name(tmp_path):
    """A stream through OpenRouter names the model as `openai/gpt-4`: exact cl100k_base."""
    import json

    from click.testing import CliRunner
    from llm.cli import cli

    chunk = {"model": "openai/gpt-4", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    path = tmp_path / "openrouter.sse"
    path.write_text(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n")
    result = CliRunner().invoke(cli, ["streamscope", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    (response,) = json.loads(result.stdout)["responses"]
    assert (response["encoding"], response["encoding_exact"]) == ("cl100k_base", True)
