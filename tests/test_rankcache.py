"""The compact copy of an encoding's parsed ranks beside tiktoken's cache file: the same
ranks as parsing the file, and nothing but those ranks is ever used."""

from __future__ import annotations

import os

import pytest

from llm_streamscope.analysis import encodings, rankcache


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    return cache


def source_files(name):
    source = encodings._offline_source(name)
    tiktoken_file = encodings._cache_dir() / source.cache_key
    return source, tiktoken_file, rankcache.path_for(tiktoken_file)


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_a_load_keeps_the_parsed_ranks_and_the_next_load_reads_them_back_exactly(fresh_cache, name):
    source, tiktoken_file, compact = source_files(name)
    first = encodings._ranks(source)  # a cold cache: seeded, parsed, kept
    assert compact.is_file()
    assert first == encodings._parse_ranks(tiktoken_file.read_bytes())
    again = rankcache.read(compact, source.expected_hash)
    assert again == first and list(again.items()) == list(first.items())
    assert encodings._load(name).encode("hello world") == encodings.get_encoding(name).encode(
        "hello world"
    )


def test_a_damaged_or_stale_copy_is_never_used_and_is_rebuilt(fresh_cache):
    source, _, compact = source_files("cl100k_base")
    ranks = encodings._ranks(source)
    data = compact.read_bytes()
    assert rankcache.read(compact, "another source's sha256") is None
    for damaged in (data[:-1], data[:100], data[:-40] + bytes([data[-40] ^ 1]) + data[-39:], b""):
        compact.unlink()
        compact.write_bytes(damaged)
        assert rankcache.read(compact, source.expected_hash) is None
        assert encodings._ranks(source) == ranks  # parsed again
        assert compact.read_bytes() == data  # and kept again, the same bytes


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no file owners")
def test_a_copy_others_can_write_is_not_read(fresh_cache):
    source, _, compact = source_files("cl100k_base")
    ranks = encodings._ranks(source)
    compact.chmod(0o666)
    assert rankcache.read(compact, source.expected_hash) is None
    assert encodings._ranks(source) == ranks  # from tiktoken's file instead
    compact.chmod(0o644)
    assert rankcache.read(compact, source.expected_hash) == ranks


def test_an_unwritable_cache_still_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # caching off
    source = encodings._offline_source("cl100k_base")
    assert encodings._ranks(source)[b"hello"] == 15339
