"""A compact copy of an encoding's parsed BPE ranks, kept beside tiktoken's cache file.

Parsing a ``.tiktoken`` file (a base64 token and its rank on each of 200k lines)
is a third of what loading o200k_base costs. This file holds the same ranks
ready to use: every token's bytes end to end, each token's length and each rank,
so reading them back is a slice per token and no decoding. It is keyed by the
sha256 tiktoken expects of the source file (the ranks were parsed from a file
that passed that check) and ends with a sha256 of its own content, so a
truncated or damaged file is never used: it is rebuilt from the source.

Only a file this user owns, that no one else can write, is read (a shared
temporary folder is where tiktoken keeps its cache by default).

    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ranks"
    >>> source = hashlib.sha256(b"the source file").hexdigest()
    >>> write(path, source, {b"a": 0, b"bc": 1})
    >>> read(path, source)
    {b'a': 0, b'bc': 1}
    >>> read(path, hashlib.sha256(b"another source").hexdigest()) is None
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import struct
import sys
import uuid
from array import array
from itertools import accumulate

MAGIC = b"streamscope-ranks-1 " + sys.byteorder.encode("ascii") + b"\n"
"""The format, and the byte order its numbers are written in."""
_HEADER = struct.Struct("=64sI")  # the source's sha256 (hex), the number of tokens
_DIGEST = 32


def path_for(tiktoken_file: pathlib.Path) -> pathlib.Path:
    """Where the compact ranks of tiktoken's cache file ``tiktoken_file`` live: beside it."""
    return tiktoken_file.with_name(tiktoken_file.name + ".streamscope-ranks")


def read(path: pathlib.Path, source_hash: str) -> dict[bytes, int] | None:
    """The ranks kept in ``path`` for the source file of sha256 ``source_hash``; None
    when there is no such file, it is another user's or writable by others, or it
    does not check out (another source, another byte order, damaged)."""
    try:
        with open(path, "rb", buffering=0) as f:
            info = os.fstat(f.fileno())
            if _foreign(info):
                return None
            data = f.read()
    except OSError:
        return None
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if len(data) < len(MAGIC) + _HEADER.size + _DIGEST or not body.startswith(MAGIC):
        return None
    if hashlib.sha256(body).digest() != digest:
        return None
    stored_hash, n = _HEADER.unpack_from(body, len(MAGIC))
    if stored_hash != source_hash.encode("ascii"):
        return None
    start = len(MAGIC) + _HEADER.size
    ranks, sizes = array("I"), array("H")
    ranks.frombytes(body[start : start + 4 * n])
    sizes.frombytes(body[start + 4 * n : start + 6 * n])
    tokens = memoryview(body)[start + 6 * n :]
    if len(ranks) != n or len(sizes) != n or sum(sizes) != len(tokens):
        return None
    ends = list(accumulate(sizes))
    starts = [0, *ends[:-1]]
    return dict(zip(map(bytes, map(tokens.__getitem__, map(slice, starts, ends))), ranks))


def write(path: pathlib.Path, source_hash: str, ranks: dict[bytes, int]) -> None:
    """Keep ``ranks`` (parsed from the source of sha256 ``source_hash``) in ``path``.

    Atomic: the file appears whole or not at all. One that exists is left as it is
    unless it is this user's and does not check out. Raises OSError when the folder
    cannot be written.
    """
    tokens = list(ranks)
    if any(len(token) > 0xFFFF for token in tokens):
        return  # no encoding has such tokens: nothing to gain from keeping these
    body = b"".join(
        (
            MAGIC,
            _HEADER.pack(source_hash.encode("ascii"), len(tokens)),
            array("I", ranks.values()).tobytes(),
            array("H", map(len, tokens)).tobytes(),
            *tokens,
        )
    )
    tmp = path.with_name(f"{path.name}.{uuid.uuid4()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.write(hashlib.sha256(body).digest())
        try:
            # link(), unlike rename(), leaves a file another process just wrote alone.
            os.link(tmp, path)
        except FileExistsError:
            if not _foreign(os.stat(path)) and read(path, source_hash) is None:
                os.replace(tmp, path)  # our own copy, damaged or of another source
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _foreign(info: os.stat_result) -> bool:
    """Whether a file with ``info`` could hold what someone else wrote."""
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # no owners to check (Windows): the folder is the user's own
        return False
    return info.st_uid != getuid() or bool(info.st_mode & 0o022)
