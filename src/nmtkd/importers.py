"""Dataset importers: local files (plain or .gz), URLs with a local mirror, sacreBLEU test sets.

A location is one of
  * a local path (plain text or gzip),
  * an http(s) URL: first looked up by its file name in the mirror directory, then downloaded,
  * ``sacrebleu:<testset>``: fetched through sacreBLEU's own API for the configured language pair.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from nmtkd.errors import NmtkdError
from nmtkd.safepaths import require_file, temporary_folder
from nmtkd.textio import atomic_path, open_binary, sha256_files

MIRROR_ENV = "NMTKD_DATA_MIRROR"
SACREBLEU_PREFIX = "sacrebleu:"
log = logging.getLogger(__name__)


def resolve_mirror(configured: str | None) -> Path | None:
    """The mirror directory: the environment variable wins over the config value."""
    value = os.environ.get(MIRROR_ENV) or configured
    if not value:
        return None
    mirror = Path(value)
    if not mirror.is_dir():
        log.warning("data mirror %s is not a directory; ignoring it", mirror)
        return None
    return mirror


def mirror_copy(location: str, mirror: Path | None) -> Path | None:
    """Where a URL's file would be found in the mirror (None for other locations)."""
    if mirror is None or not is_url(location):
        return None
    return mirror / Path(urllib.parse.urlparse(location).path).name


def is_url(location: str) -> bool:
    return urllib.parse.urlparse(location).scheme in {"http", "https", "ftp"}


def check_sha256(path: Path, expected: str | None, origin: str) -> None:
    if not expected:
        return
    found = sha256_files(path)
    if found != expected.lower():
        raise NmtkdError(f"{origin}: sha256 mismatch (expected {expected}, got {found})")


def parse_sacrebleu_location(location: str, side: str, langpair: str | None) -> tuple[str, str]:
    """Validate a ``sacrebleu:<testset>`` location; return (testset, langpair)."""
    testset = location[len(SACREBLEU_PREFIX):].strip()
    if not testset:
        raise NmtkdError(f"{location!r}: expected sacrebleu:<testset>, e.g. sacrebleu:wmt14")
    if side not in {"src", "tgt"}:
        raise NmtkdError(f"side must be 'src' or 'tgt', got {side!r}")
    if not langpair or langpair.count("-") != 1:
        raise NmtkdError(f"{location}: a language pair like 'en-de' is required, got {langpair!r}")
    from sacrebleu.dataset import DATASETS

    if testset not in DATASETS:
        raise NmtkdError(f"{location}: unknown sacreBLEU test set {testset!r}")
    pairs = DATASETS[testset].langpairs
    if langpair not in pairs:
        raise NmtkdError(
            f"{location}: sacreBLEU test set {testset} has no language pair {langpair} "
            f"(it has: {', '.join(sorted(p for p in pairs if '-' in p))})"
        )
    return testset, langpair


def fetch_sacrebleu(location: str, side: str, langpair: str | None, out: Path) -> None:
    testset, langpair = parse_sacrebleu_location(location, side, langpair)
    from sacrebleu.utils import get_reference_files, get_source_file

    try:
        path = get_source_file(testset, langpair) if side == "src" else get_reference_files(
            testset, langpair)[0]
    except (Exception, SystemExit) as error:  # sacrebleu may sys.exit() on download failure
        raise NmtkdError(f"{location}: sacreBLEU could not provide the {side} side "
                         f"({error})") from None
    _copy_decompressed(Path(path), out)


def _copy_decompressed(source: Path, out: Path) -> None:
    with atomic_path(out) as tmp, open_binary(source) as reader, tmp.open("wb") as writer:
        try:
            shutil.copyfileobj(reader, writer, 1 << 20)
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise NmtkdError(f"{source}: corrupt or truncated compressed file "
                             f"({error})") from None


def _download(url: str, target: Path) -> None:
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as writer:
            shutil.copyfileobj(response, writer, 1 << 20)
    except OSError as error:
        raise NmtkdError(f"{url}: download failed ({error}); set {MIRROR_ENV} or "
                         "data.mirror to a directory holding this file for offline use") from None


def fetch(
    location: str,
    out: str | Path,
    sha256: str | None = None,
    mirror: Path | None = None,
    side: str = "src",
    langpair: str | None = None,
) -> None:
    """Materialise `location` as a plain UTF-8 text file at `out` (atomically)."""
    out = Path(out)
    if location.startswith(SACREBLEU_PREFIX):
        fetch_sacrebleu(location, side, langpair, out)
        return
    if is_url(location):
        name = Path(urllib.parse.urlparse(location).path).name
        candidate = mirror_copy(location, mirror)
        if candidate and candidate.is_file():
            log.info("using mirror copy %s for %s", candidate, location)
            check_sha256(candidate, sha256, str(candidate))
            _copy_decompressed(candidate, out)
            return
        with temporary_folder(out) as folder:
            tmp = folder / name
            _download(location, tmp)
            check_sha256(tmp, sha256, location)
            _copy_decompressed(tmp, out)
        return
    path = Path(location)
    require_file(path)
    check_sha256(path, sha256, str(path))
    _copy_decompressed(path, out)
