"""Safe outputs: what a command may replace, and what it refuses (unit level)."""

import os
import socket

import pytest

from nmtkd.errors import NmtkdError
from nmtkd.safepaths import (
    MARKER,
    _commit,
    atomic_path,
    atomic_paths,
    check_distinct,
    check_output_kind,
    check_writable_parent,
    mark_directory,
    sweep_stale_temporaries,
)


def test_a_file_output_never_replaces_a_directory(tmp_path):
    directory = tmp_path / "corpus"
    directory.mkdir()
    (directory / "train.en").write_text("mine\n")
    with pytest.raises(NmtkdError, match="corpus: is a directory; refusing"), \
            atomic_path(directory) as tmp:
        tmp.write_text("new\n")
    assert (directory / "train.en").read_text() == "mine\n"


def test_a_file_replaces_a_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")
    with atomic_path(target) as tmp:
        tmp.write_text("new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_directory_output_replaces_only_its_own_earlier_output(tmp_path):
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "notes.txt").write_text("keep\n")
    with pytest.raises(NmtkdError, match="not written by nmtkd; refusing"):
        check_output_kind(user_dir, directory=True, owner="export")
    target = tmp_path / "model"
    for content in ("first", "second"):
        with atomic_path(target, directory=True, owner="export") as tmp:
            tmp.mkdir()
            (tmp / "model.bin").write_text(content)
    assert (target / "model.bin").read_text() == "second"
    assert (target / MARKER).read_text() == "export\n"
    with pytest.raises(NmtkdError, match="written by 'nmtkd export'"):
        check_output_kind(target, directory=True, owner="train")
    empty = tmp_path / "empty"
    empty.mkdir()
    check_output_kind(empty, directory=True, owner="export")  # nothing to lose
    legacy_dir = tmp_path / "legacy"
    legacy_dir.mkdir()
    (legacy_dir / "model.bin").write_text("x")
    check_output_kind(legacy_dir, directory=True, owner="export",
                      legacy=lambda d: all(p.name == "model.bin" for p in d.iterdir()))


def test_a_directory_output_never_replaces_a_file(tmp_path):
    target = tmp_path / "model"
    target.write_text("a file\n")
    with pytest.raises(NmtkdError, match="is not a directory; refusing"):
        check_output_kind(target, directory=True, owner="export")


def test_outputs_must_be_distinct_from_each_other_and_from_inputs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "sub" / ".." / "a"
    with pytest.raises(NmtkdError, match="--out-src and --out-tgt name the same file"):
        check_distinct({"--out-src": a, "--out-tgt": b}, {})
    with pytest.raises(NmtkdError, match="--output and --input name the same file"):
        check_distinct({"--output": a}, {"--input": b})
    link = tmp_path / "link"
    a.write_text("x\n")
    link.symlink_to(a)
    with pytest.raises(NmtkdError, match="same file"):
        check_distinct({"--output": link}, {"--input": a})
    with pytest.raises(NmtkdError, match="lies inside --output"):
        check_distinct({"--output": tmp_path / "dir"}, {"--spm": tmp_path / "dir" / "spm.model"},
                       ["--output"])
    check_distinct({"--output": tmp_path / "x"}, {"--spm": tmp_path / "x2"}, ["--output"])


def test_an_output_under_a_regular_file_fails_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x\n")
    with pytest.raises(NmtkdError, match=r"cannot create it: .*file is not a directory"):
        check_writable_parent(blocker / "sub" / "out.txt")


def test_outputs_appear_together_or_not_at_all(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("old a\n")
    second.write_text("old b\n")
    with pytest.raises(RuntimeError), atomic_paths([first, second]) as (tmp_a, tmp_b):
        tmp_a.write_text("new a\n")
        raise RuntimeError("the work failed after writing one output")
    assert (first.read_text(), second.read_text()) == ("old a\n", "old b\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_a_failed_move_rolls_back_the_outputs_already_moved(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("old a\n")
    new_a = tmp_path / "new_a"
    new_a.write_text("new a\n")
    backups = [tmp_path / "backup_a", tmp_path / "backup_b"]
    # the second temporary does not exist, so its move fails after the first one succeeded
    with pytest.raises(FileNotFoundError):
        _commit([(new_a, first), (tmp_path / "missing", second)], backups)
    assert first.read_text() == "old a\n"
    assert not second.exists()
    fresh = tmp_path / "fresh.txt"  # did not exist before: removed again
    new_fresh = tmp_path / "new_fresh"
    new_fresh.write_text("new\n")
    with pytest.raises(FileNotFoundError):
        _commit([(new_fresh, fresh), (tmp_path / "missing", second)], backups)
    assert not fresh.exists() and not second.exists()


def test_stale_temporaries_of_killed_runs_are_swept(tmp_path):
    target = tmp_path / "train.de"
    dead = tmp_path / f".train.de.nmtkd-tmp.{socket.gethostname()}.999999999.abcdefgh"
    other_host = tmp_path / ".train.de.nmtkd-tmp.elsewhere.1.abcdefgh"
    legacy = tmp_path / ".train.de.ab12_xyz"
    mine = tmp_path / f".train.de.nmtkd-tmp.{socket.gethostname()}.{os.getpid()}.zzzzzzzz"
    user_folder = tmp_path / ".train.de.notes123"
    for folder in (dead, other_host, legacy, mine, user_folder):
        folder.mkdir()
        (folder / "train.de").write_text("partial\n")
    (user_folder / "my_notes.txt").write_text("keep\n")  # not ours: holds another file
    other_target = tmp_path / f".train.de.en.nmtkd-tmp.{socket.gethostname()}.999999999.q"
    other_target.mkdir()
    removed = sweep_stale_temporaries(target)
    assert sorted(p.name for p in removed) == sorted([dead.name, other_host.name, legacy.name])
    assert mine.exists() and user_folder.exists() and other_target.exists()


def test_a_train_state_directory_is_marked(tmp_path):
    workdir = tmp_path / "work"
    mark_directory(workdir, "train")
    (workdir / "state.pt").write_text("x")
    check_output_kind(workdir, directory=True, owner="train")
    with pytest.raises(NmtkdError, match="written by 'nmtkd train'"):
        check_output_kind(workdir, directory=True, owner="export")
