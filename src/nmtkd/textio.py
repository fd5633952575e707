"""Text files: plain or gzip reading, and atomic writing that never leaves partial output."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from nmtkd.errors import NmtkdError
from nmtkd.safepaths import atomic_path, atomic_paths, require_file

__all__ = ["atomic_path", "atomic_paths", "atomic_writer", "iter_lines", "read_lines"]


def sha256_files(*paths: str | Path) -> str:
    """The SHA-256 (hex) of the files' bytes in order, a NUL byte between two files (one
    file: its plain checksum), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    for index, path in enumerate(paths):
        if index:
            digest.update(b"\0")
        with Path(path).open("rb") as handle:
            for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a plain or gzip file for binary reading; gzip is detected by its magic bytes."""
    path = Path(path)
    require_file(path)
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return path.open("rb")


UTF8_BOM = b"\xef\xbb\xbf"


@contextlib.contextmanager
def reading(path: str | Path) -> Iterator[IO[bytes]]:
    """`open_binary`, with a read that fails on corrupt or truncated compressed data turned
    into one line naming the file."""
    with open_binary(path) as handle:
        try:
            yield handle
        except (EOFError, OSError, zlib.error) as error:
            raise NmtkdError(f"{path}: corrupt or truncated compressed file ({error})") from None


def starts_with_bom(path: str | Path) -> bool:
    """Whether the (decompressed) file starts with a UTF-8 byte-order mark."""
    with reading(path) as handle:
        return handle.read(len(UTF8_BOM)) == UTF8_BOM


def looks_cr_only(path: str | Path, probe_bytes: int = 1 << 16) -> bool:
    """Whether the file's line endings look like lone CRs (classic Mac): its first
    `probe_bytes` hold a CR but no LF."""
    with open_binary(path) as handle:
        try:
            head = handle.read(probe_bytes)
        except (EOFError, OSError, zlib.error):
            return False
    return b"\r" in head and b"\n" not in head


def iter_raw_lines(path: str | Path) -> Iterator[bytes]:
    """Yield each line as bytes without its line ending (streaming, constant memory).

    A UTF-8 byte-order mark at the start of the file is not part of the first line."""
    with reading(path) as handle:
        for number, line in enumerate(handle):
            if number == 0 and line.startswith(UTF8_BOM):
                line = line[len(UTF8_BOM):]
            yield line.rstrip(b"\r\n")


def iter_lines(path: str | Path) -> Iterator[str]:
    """Yield the UTF-8 lines of a file; invalid UTF-8 is an error naming the line."""
    for number, raw in enumerate(iter_raw_lines(path), start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise NmtkdError(f"{path}, line {number}: invalid UTF-8 ({error.reason})") from None


def read_lines(path: str | Path) -> list[str]:
    """Read a small UTF-8 text file into a list of lines (for test sets and decoded output)."""
    return list(iter_lines(path))


def count_lines(path: str | Path) -> int:
    return sum(1 for _ in iter_raw_lines(path))


@contextlib.contextmanager
def atomic_writer(target: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a file for writing that appears at `target` only when the block succeeds."""
    encoding = None if "b" in mode else "utf-8"
    with atomic_path(target) as tmp, open(tmp, mode, encoding=encoding) as handle:
        yield handle


def write_lines(target: str | Path, lines: list[str]) -> None:
    with atomic_writer(target) as handle:
        for line in lines:
            handle.write(line + "\n")
