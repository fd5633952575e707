import gzip
import hashlib

import pytest

from nmtkd.errors import NmtkdError
from nmtkd.importers import MIRROR_ENV, fetch, parse_sacrebleu_location, resolve_mirror

URL = "http://127.0.0.1:9/data/task1/raw/train.en.gz"  # nothing listens: downloads fail fast


@pytest.fixture
def mirror(tmp_path):
    directory = tmp_path / "mirror"
    directory.mkdir()
    with gzip.open(directory / "train.en.gz", "wb") as handle:
        handle.write(b"a cat\na dog\n")
    return directory


def test_local_plain_and_gzip(tmp_path, mirror):
    plain = tmp_path / "plain.txt"
    plain.write_text("one\ntwo\n")
    fetch(str(plain), tmp_path / "out1")
    fetch(str(mirror / "train.en.gz"), tmp_path / "out2")
    assert (tmp_path / "out1").read_text() == "one\ntwo\n"
    assert (tmp_path / "out2").read_text() == "a cat\na dog\n"


def test_url_is_served_from_the_mirror_by_file_name(tmp_path, mirror):
    digest = hashlib.sha256((mirror / "train.en.gz").read_bytes()).hexdigest()
    fetch(URL, tmp_path / "out", sha256=digest, mirror=mirror)
    assert (tmp_path / "out").read_text() == "a cat\na dog\n"


def test_sha256_mismatch_is_an_error_and_leaves_no_output(tmp_path, mirror):
    with pytest.raises(NmtkdError, match="sha256 mismatch"):
        fetch(URL, tmp_path / "out", sha256="0" * 64, mirror=mirror)
    assert not (tmp_path / "out").exists()


def test_download_failure_names_the_url_and_the_mirror_variable(tmp_path):
    with pytest.raises(NmtkdError, match=f"{URL}: download failed.*{MIRROR_ENV}"):
        fetch(URL, tmp_path / "out", mirror=None)
    assert list(tmp_path.iterdir()) == []


def test_environment_variable_overrides_config_mirror(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    assert resolve_mirror(str(tmp_path / "elsewhere")) == mirror
    monkeypatch.delenv(MIRROR_ENV)
    assert resolve_mirror(str(mirror)) == mirror
    assert resolve_mirror(str(tmp_path / "does-not-exist")) is None


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(NmtkdError, match="nope.txt: file not found"):
        fetch(str(tmp_path / "nope.txt"), tmp_path / "out")


def test_sacrebleu_location_validation():
    assert parse_sacrebleu_location("sacrebleu:wmt14", "src", "en-de") == ("wmt14", "en-de")
    with pytest.raises(NmtkdError, match="unknown sacreBLEU test set 'nosuchset'"):
        parse_sacrebleu_location("sacrebleu:nosuchset", "src", "en-de")
    with pytest.raises(NmtkdError, match="has no language pair xx-yy"):
        parse_sacrebleu_location("sacrebleu:wmt14", "src", "xx-yy")
    with pytest.raises(NmtkdError, match="expected sacrebleu:<testset>"):
        parse_sacrebleu_location("sacrebleu:", "src", "en-de")
    with pytest.raises(NmtkdError, match="side must be"):
        parse_sacrebleu_location("sacrebleu:wmt14", "ref", "en-de")


@pytest.mark.network
def test_sacrebleu_download(tmp_path):
    import socket

    try:
        socket.create_connection(("github.com", 443), timeout=3).close()
    except OSError:
        pytest.skip("offline: sacreBLEU test sets cannot be downloaded here")
    fetch("sacrebleu:wmt14", tmp_path / "src", side="src", langpair="en-de")
    assert len((tmp_path / "src").read_text().splitlines()) == 3003
