"""`nmtkd <command>` refuses unsafe paths and bad values up front, with one line on stderr, and
replaces only what it wrote itself (every sub-command, through the real CLI)."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

import pytest

from nmtkd.export import export_model
from nmtkd.safepaths import MARKER
from nmtkd.textio import read_lines

LINES_EN = ["a small house", "the green tree", "two red cars"]
LINES_DE = ["ein kleines haus", "der gruene baum", "zwei rote autos"]
SYS_OUTPUT = Path("/sys/nmtkd-test/out.txt")  # sysfs refuses mkdir, even for root


def nmtkd(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NMTKD_DATA_MIRROR"}
    return subprocess.run([sys.executable, "-m", "nmtkd.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The one stderr line of a refused command (asserting the one-line contract)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"nmtkd {command}: error: "), lines[0]
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root`: files by bytes and mtime, links by target, folders by name."""
    entries: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                entries[key] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[key] = ("dir",)
            elif not path.is_file():  # a FIFO: reading it would block
                entries[key] = ("special", path.stat().st_mode)
            else:
                entries[key] = ("file", path.read_bytes(), path.stat().st_mtime_ns)
    return entries


def write_text_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_gzip(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)
    return path


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if "nmtkd-tmp" in p.name)


# ---- the table of refused commands -----------------------------------------------------------
def standard_files(d: Path) -> dict[str, str]:
    """Small inputs every case may name: $src, $tgt, $spm, $ckpt, $ct2, $tsv, $json, $ro."""
    write_text_lines(d / "src.en", LINES_EN)
    write_text_lines(d / "tgt.de", LINES_DE)
    (d / "spm.model").write_bytes(b"not really a sentencepiece model")
    (d / "model.pt").write_bytes(b"not really a checkpoint")
    (d / "ct2").mkdir()
    (d / "ct2" / "model.bin").write_bytes(b"not really a ctranslate2 model")
    write_text_lines(d / "nbest.tsv", [f"{i}\t0\t-1.0\t{line}" for i, line in
                                       enumerate(LINES_DE)])
    (d / "result.json").write_text('{"bleu": 1.0}\n')
    read_only = SYS_OUTPUT.parent if os.geteuid() == 0 else d / "ro"
    return {"d": str(d), "src": str(d / "src.en"), "tgt": str(d / "tgt.de"),
            "spm": str(d / "spm.model"), "ckpt": str(d / "model.pt"), "ct2": str(d / "ct2"),
            "tsv": str(d / "nbest.tsv"), "json": str(d / "result.json"), "ro": str(read_only)}


def truncated_gzip(name: str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        whole = write_gzip(d / name, [f"sentence number {i} " * 5 for i in range(300)])
        data = whole.read_bytes()
        whole.write_bytes(data[: len(data) // 2])
    return setup


def text_file(name: str, lines: list[str]) -> Callable[[Path], None]:
    return lambda d: write_text_lines(d / name, lines)


def corpus_folder(d: Path) -> None:
    write_text_lines(d / "data" / "corpus.en", LINES_EN)
    write_text_lines(d / "data" / "corpus.de", LINES_DE)


def mirror_folder(d: Path) -> None:
    write_gzip(d / "mirror" / "corpus.en.gz", LINES_EN)
    write_gzip(d / "mirror" / "corpus.de.gz", LINES_DE)


def spm_model_directory(d: Path) -> None:
    (d / "joint.model").mkdir()
    (d / "joint.vocab").write_text("<pad>\t0\n<unk>\t0\n")


def user_folder(name: str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        (d / name).mkdir()
        (d / name / "notes.txt").write_text("the user's own notes\n")
    return setup


def regular_file(name: str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        (d / name).write_text("a regular file\n")
    return setup


def plain_folder(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).mkdir()


def train_workdir(d: Path) -> None:
    (d / "trainwork").mkdir()
    (d / "trainwork" / MARKER).write_text("train\n")
    (d / "trainwork" / "state.pt").write_bytes(b"state")


def checkpoint_in_folder(d: Path) -> None:
    (d / "m").mkdir()
    (d / "m" / "model.pt").write_bytes(b"not really a checkpoint")


def vocab_input(d: Path) -> None:
    write_text_lines(d / "corpus.vocab", LINES_EN)


def symlink_to_target(d: Path) -> None:
    (d / "link.de").symlink_to(d / "tgt.de")


def duplicate_key_config(d: Path) -> None:
    (d / "config.yaml").write_text("experiment: x\nseed: 1\nseed: 2\n")


def manifest_file(d: Path) -> None:
    manifest = {"teacher": "t", "models": [{"name": "t", "eval": {"ts": {}}, "ct2": {}}],
                "testsets": ["ts"], "speed_testset": "ts", "beam_size": 5}
    (d / "manifest.json").write_text(json.dumps(manifest))


def fifo(d: Path) -> None:
    os.mkfifo(d / "pipe.en")


def symlink_loop(d: Path) -> None:
    (d / "loop1.en").symlink_to(d / "loop2.en")
    (d / "loop2.en").symlink_to(d / "loop1.en")


def dangling_symlink(d: Path) -> None:
    (d / "gone.en").symlink_to(d / "deleted.en")


def fetch_inputs(d: Path) -> None:
    write_text_lines(d / "four.en", [*LINES_EN, "one more"])
    write_text_lines(d / "empty.en", [])
    (d / "mac.en").write_bytes("\r".join(LINES_EN).encode() + b"\r")
    (d / "mac.de").write_bytes("\r".join(LINES_DE).encode() + b"\r")


def read_only_folder(d: Path) -> None:
    if os.geteuid() != 0:
        (d / "ro").mkdir()
        (d / "ro").chmod(0o555)


@dataclass(frozen=True)
class Case:
    argv: str  # a string.Template over standard_files' names, split at spaces
    expect: str  # a Template too: what the error line must contain
    setup: Callable[[Path], None] | None = None
    kept: tuple[str, ...] = ()  # files (relative) that must still exist afterwards


def case(case_id: str, argv: str, expect: str, setup: Callable[[Path], None] | None = None,
         kept: tuple[str, ...] = ()) -> pytest.param:
    return pytest.param(Case(argv, expect, setup, kept), id=case_id)


DECODE = "translate --model $ct2 --input $src --output $d/out.de"
TRAIN = ("train --train-src $src --train-tgt $tgt --valid-src $src --valid-tgt $tgt "
         "--valid-ref $tgt --spm $spm")
CLEAN = "clean --src $src --tgt $tgt"
SIGNALS = "teacher-signals --model $ckpt --train-src $src --train-tgt $tgt --spm $spm"
DATASTORE = "datastore --model $ckpt --train-src $src --train-tgt $tgt --spm $spm"
CASES = [
    # fetch
    case("fetch-truncated-gz", "fetch --src $d/corpus.en.gz --tgt $tgt --out-src $d/o.en "
         "--out-tgt $d/o.de", "$d/corpus.en.gz: corrupt or truncated",
         truncated_gzip("corpus.en.gz")),
    case("fetch-truncated-gz-on-the-tgt-side", "fetch --src $src --tgt $d/corpus.de.gz "
         "--out-src $d/o.en --out-tgt $d/o.de", "$d/corpus.de.gz: corrupt or truncated",
         truncated_gzip("corpus.de.gz")),
    case("fetch-out-src-is-the-corpus-folder", "fetch --src $d/data/corpus.en "
         "--tgt $d/data/corpus.de --out-src $d/data/ --out-tgt $d/o.de",
         "$d/data: is a directory", corpus_folder, kept=("data/corpus.en", "data/corpus.de")),
    case("fetch-missing-src", "fetch --src $d/nope.en --tgt $tgt --out-src $d/o.en "
         "--out-tgt $d/o.de", "$d/nope.en: file not found"),
    case("fetch-out-src-is-the-mirror-copy",
         "fetch --src https://example.invalid/corpus.en.gz "
         "--tgt https://example.invalid/corpus.de.gz --mirror $d/mirror "
         "--out-src $d/mirror/corpus.en.gz --out-tgt $d/o.de", "$d/mirror/corpus.en.gz",
         mirror_folder),
    case("fetch-line-counts-differ-names-the-inputs", "fetch --src $d/four.en --tgt $tgt "
         "--out-src $d/o.en --out-tgt $d/o.de",
         "line counts differ: $d/four.en has 4 lines, $tgt has 3 lines", fetch_inputs),
    case("fetch-empty-input-names-it", "fetch --src $d/empty.en --tgt $d/empty.en "
         "--out-src $d/o.en --out-tgt $d/o.de", "error: $d/empty.en: file is empty",
         fetch_inputs),
    case("fetch-cr-only-input-names-it", "fetch --src $d/mac.en --tgt $d/mac.de "
         "--out-src $d/o.en --out-tgt $d/o.de",
         "error: $d/mac.en: the line endings look like CR only", fetch_inputs),
    # clean
    case("clean-src-is-a-fifo", f"{CLEAN} --src $d/pipe.en --out-src $d/x.en "
         "--out-tgt $d/x.de --report $d/r.json",
         "$d/pipe.en: is a pipe (FIFO or process substitution), not a regular file", fifo),
    case("clean-src-is-dev-null", "clean --src /dev/null --tgt $tgt --out-src $d/x.en "
         "--out-tgt $d/x.de --report $d/r.json", "/dev/null: is a character device"),
    case("clean-src-is-a-symlink-loop", "clean --src $d/loop1.en --tgt $tgt --out-src $d/x.en "
         "--out-tgt $d/x.de --report $d/r.json", "$d/loop1.en: a loop of symbolic links",
         symlink_loop),
    case("clean-src-is-a-dangling-symlink", "clean --src $d/gone.en --tgt $tgt "
         "--out-src $d/x.en --out-tgt $d/x.de --report $d/r.json",
         "$d/gone.en: a symbolic link to $d/deleted.en, which does not exist",
         dangling_symlink),
    case("clean-out-src-aliases-out-tgt", f"{CLEAN} --out-src $d/x --out-tgt $d/x "
         "--report $d/r.json", "--out-src and --out-tgt name the same file"),
    case("clean-report-is-out-src", f"{CLEAN} --out-src $d/x.en --out-tgt $d/x.de "
         "--report $d/x.en", "--out-src and --report name the same file"),
    case("clean-out-tgt-is-tgt", f"{CLEAN} --out-src $d/x.en --out-tgt $tgt --report $d/r.json",
         "--out-tgt and --tgt name the same file"),
    case("clean-out-tgt-links-to-tgt", f"{CLEAN} --out-src $d/x.en --out-tgt $d/link.de "
         "--report $d/r.json", "--out-tgt and --tgt", symlink_to_target),
    case("clean-max-tokens-0", f"{CLEAN} --out-src $d/x.en --out-tgt $d/x.de "
         "--report $d/r.json --max-tokens 0", "argument --max-tokens: must be at least 1"),
    case("clean-max-ratio-below-1", f"{CLEAN} --out-src $d/x.en --out-tgt $d/x.de "
         "--report $d/r.json --max-ratio 0.5", "argument --max-ratio: must be at least 1"),
    case("clean-report-in-read-only-folder", f"{CLEAN} --out-src $d/x.en --out-tgt $d/x.de "
         "--report $ro/out.txt", "$ro/out.txt", read_only_folder),
    # spm-train
    case("spm-train-model-is-a-directory", "spm-train --inputs $src --model $d/joint.model "
         "--vocab-size 50", "$d/joint.model: is a directory", spm_model_directory,
         kept=("joint.vocab",)),
    case("spm-train-vocab-is-an-input", "spm-train --inputs $d/corpus.vocab "
         "--model $d/corpus.model", "--model's .vocab and --inputs[0] name the same file",
         vocab_input),
    case("spm-train-vocab-size-0", "spm-train --inputs $src --model $d/m.model --vocab-size 0",
         "argument --vocab-size: must be at least 1"),
    case("spm-train-character-coverage-0", "spm-train --inputs $src --model $d/m.model "
         "--character-coverage 0", "argument --character-coverage: must be above 0"),
    case("spm-train-character-coverage-nan", "spm-train --inputs $src --model $d/m.model "
         "--character-coverage nan", "argument --character-coverage: must be a finite number"),
    # spm-encode
    case("spm-encode-output-is-input", "spm-encode --model $spm --input $src --output $src",
         "--output and --input name the same file"),
    case("spm-encode-model-not-sentencepiece", "spm-encode --model $spm --input $src "
         "--output $d/o.sp", "$spm: not a SentencePiece model"),
    case("spm-encode-missing-model", "spm-encode --model $d/nope.model --input $src "
         "--output $d/o.sp", "$d/nope.model: file not found"),
    # split
    case("split-outputs-aliased", "split --input $src --outputs $d/a.txt $d/b.txt $d/a.txt",
         "--outputs[0] and --outputs[2] name the same file"),
    case("split-output-under-a-regular-file", "split --input $src --outputs $d/notes.txt/c0 "
         "$d/c1", "$d/notes.txt/c0: cannot create it: $d/notes.txt is not a directory",
         regular_file("notes.txt")),
    case("split-more-chunks-than-lines", "split --input $src --outputs $d/a $d/b $d/c $d/e",
         "$src: 3 lines cannot fill 4 chunks"),
    # gather
    case("gather-output-is-input", "gather --inputs $src $tgt --output $tgt",
         "--output and --inputs[1] name the same file"),
    case("gather-nbest-inputs-without-output", "gather --inputs $src --output $d/all.txt "
         "--nbest-inputs $tsv", "--nbest-inputs needs --nbest-output"),
    case("gather-count-differs-from-expected", "gather --inputs $src --output $d/all.txt "
         "--expected $d/two.txt", "gathered 3 lines from 1 chunks, but $d/two.txt has 2",
         text_file("two.txt", LINES_DE[:2])),
    case("gather-nbest-line-without-a-tab", "gather --inputs $src --output $d/all.txt "
         "--nbest-inputs $d/notab.tsv --nbest-output $d/all.tsv", "$d/notab.tsv",
         text_file("notab.tsv", ["no tab here"])),
    # train
    case("train-workdir-holds-a-user-file", f"{TRAIN} --workdir $d/work --output $d/m.pt "
         "--summary $d/s.json", "$d/work: existing directory not written by nmtkd",
         user_folder("work"), kept=("work/notes.txt",)),
    case("train-output-aliases-summary", f"{TRAIN} --workdir $d/work --output $d/m.pt "
         "--summary $d/m.pt", "--output and --summary name the same file"),
    case("train-workdir-holds-the-inputs", f"{TRAIN} --workdir $d --output $d/m.pt "
         "--summary $d/s.json", "lies inside --workdir"),
    case("train-nproc-per-node-0", f"{TRAIN} --workdir $d/work --output $d/m.pt "
         "--summary $d/s.json --nproc-per-node 0", "argument --nproc-per-node"),
    case("train-teacher-signals-missing", f"{TRAIN} --workdir $d/work --output $d/m.pt "
         "--summary $d/s.json --teacher-signals $d/nope", "$d/nope: file not found"),
    case("train-teacher-signals-is-the-workdir", f"{TRAIN} --workdir $d/sig --output $d/m.pt "
         "--summary $d/s.json --teacher-signals $d/sig",
         "--workdir and --teacher-signals name the same file", plain_folder("sig")),
    # teacher-signals
    case("teacher-signals-output-holds-a-user-file", f"{SIGNALS} --k 8 --output $d/sig",
         "$d/sig: existing directory not written by nmtkd", user_folder("sig"),
         kept=("sig/notes.txt",)),
    case("teacher-signals-k-0", f"{SIGNALS} --k 0 --output $d/sig",
         "argument --k: must be at least 1"),
    case("teacher-signals-output-is-the-corpus", f"{SIGNALS} --k 8 --output $src",
         "--output and --train-src name the same file"),
    case("teacher-signals-checkpoint-not-a-checkpoint", f"{SIGNALS} --k 8 --output $d/sig",
         "$ckpt: cannot load checkpoint"),
    case("train-output-inside-the-teacher-signals", f"{TRAIN} --workdir $d/work "
         "--output $d/sig/model.pt --summary $d/s.json --teacher-signals $d/sig",
         "--output ($d/sig/model.pt) lies inside --teacher-signals ($d/sig)",
         plain_folder("sig")),
    case("train-settings-with-nan", f"{TRAIN} --workdir $d/work --output $d/m.pt "
         '--summary $d/s.json --settings {"training":{"lr":NaN}}',
         "argument --settings: not valid JSON: NaN is not a number"),
    # datastore, knn-index, knn-targets, knn-speed
    case("knn-targets-output-inside-the-datastore", "knn-targets --datastore $d/plain "
         "--index $d/plain --output $d/plain/targets",
         "--output ($d/plain/targets) lies inside --datastore ($d/plain)", plain_folder("plain")),
    case("knn-index-settings-with-infinity", "knn-index --datastore $d/plain "
         '--settings {"nprobe":Infinity} --output $d/index',
         "argument --settings: not valid JSON: Infinity is not a number", plain_folder("plain")),
    case("datastore-output-holds-a-user-file", f"{DATASTORE} --output $d/store",
         "$d/store: existing directory not written by nmtkd", user_folder("store"),
         kept=("store/notes.txt",)),
    case("datastore-unknown-state", f"{DATASTORE} --state middle --output $d/store",
         "argument --state: invalid choice: 'middle'"),
    case("knn-index-datastore-missing", "knn-index --datastore $d/nope --output $d/index",
         "$d/nope: file not found"),
    case("knn-index-settings-not-an-object", "knn-index --datastore $d/plain --settings [1] "
         "--output $d/index", "argument --settings: expected a JSON object",
         plain_folder("plain")),
    case("knn-targets-not-a-datastore", "knn-targets --datastore $d/plain --index $d/plain "
         "--output $d/targets", "$d/plain: not a kNN datastore", plain_folder("plain")),
    case("knn-targets-k-0", "knn-targets --datastore $d/plain --index $d/plain --k 0 "
         "--output $d/targets", "argument --k: must be at least 1", plain_folder("plain")),
    case("knn-speed-lambda-above-1", "knn-speed --model $ckpt --spm $spm --input $src "
         "--output $d/s.json --knn-datastore $d/plain --knn-index $d/plain --knn-lambda 1.5",
         "argument --knn-lambda: must be between 0 and 1, got 1.5", plain_folder("plain")),
    case("knn-tune-empty-grid", "knn-tune --model $ckpt --spm $spm --input $src "
         "--references $tgt --output $d/t.json --knn-datastore $d/plain --knn-index $d/plain "
         '--grid {"k":[],"lambda":[0.3],"temperature":[10]}',
         "knn.tune.k: needs a list of whole numbers >= 1, got []", plain_folder("plain")),
    case("knn-tune-lambda-0-in-the-grid", "knn-tune --model $ckpt --spm $spm --input $src "
         "--references $tgt --output $d/t.json --knn-datastore $d/plain --knn-index $d/plain "
         '--grid {"k":[8],"lambda":[0],"temperature":[10]}',
         "knn.tune.lambda: needs a list of numbers in (0, 1], got [0]", plain_folder("plain")),
    # export
    case("export-output-holds-a-user-file", "export --checkpoint $ckpt --spm $spm "
         "--output $d/exported", "$d/exported: existing directory not written by nmtkd",
         user_folder("exported"), kept=("exported/notes.txt",)),
    case("export-output-is-a-regular-file", "export --checkpoint $ckpt --spm $spm "
         "--output $d/notes.txt", "$d/notes.txt: exists and is not a directory",
         regular_file("notes.txt")),
    case("export-output-holds-the-checkpoint", "export --checkpoint $d/m/model.pt --spm $spm "
         "--output $d/m", "--checkpoint ($d/m/model.pt) lies inside --output",
         checkpoint_in_folder),
    case("export-output-is-a-train-workdir", "export --checkpoint $ckpt --spm $spm "
         "--output $d/trainwork", "written by 'nmtkd train'", train_workdir,
         kept=("trainwork/state.pt",)),
    case("export-checkpoint-not-a-checkpoint", "export --checkpoint $ckpt --spm $spm "
         "--output $d/exported", "$ckpt: cannot load checkpoint"),
    # corpus
    case("corpus-out-src-is-source", "corpus --sources $src --targets $tgt --spm $spm "
         "--out-src $src --out-tgt $d/c.de", "--out-src and --sources[0] name the same file"),
    case("corpus-out-tgt-is-a-directory", "corpus --sources $src --targets $tgt "
         "--spm $spm --out-src $d/c.en --out-tgt $d/outdir", "$d/outdir: is a directory",
         plain_folder("outdir")),
    case("corpus-more-sources-than-targets", "corpus --sources $src $src --targets $tgt "
         "--spm $spm --out-src $d/c.en --out-tgt $d/c.de",
         "--sources names 2 files, --targets 1"),
    # expand-nbest
    case("expand-nbest-count-0", "expand-nbest --nbest $tsv --source $src --count 0 "
         "--out-src $d/b.en --out-tgt $d/b.de", "argument --count: must be at least 1"),
    case("expand-nbest-out-tgt-is-the-nbest", "expand-nbest --nbest $tsv --source $src "
         "--out-src $d/b.en --out-tgt $tsv", "--out-tgt and --nbest name the same file"),
    case("expand-nbest-too-few-candidates", "expand-nbest --nbest $tsv --source $src "
         "--out-src $d/b.en --out-tgt $d/b.de", "sentence 1 has 1 candidate(s); 2 are needed"),
    # translate
    case("translate-output-inside-the-model", "translate --model $ct2 --input $src "
         "--output $ct2/model.bin", "--output ($ct2/model.bin) lies inside --model ($ct2)",
         kept=("ct2/model.bin",)),
    case("translate-output-inside-the-knn-datastore", "translate --backend torch "
         "--model $ckpt --spm $spm --input $src --output $d/store/meta.json "
         "--knn-datastore $d/store --knn-index $d/plain",
         "--output ($d/store/meta.json) lies inside --knn-datastore ($d/store)",
         lambda d: (plain_folder("plain")(d), user_folder("store")(d))),
    case("translate-length-penalty-nan", f"{DECODE} --length-penalty nan",
         "argument --length-penalty: must be a finite number, got 'nan'"),
    case("translate-max-len-a-infinite", f"{DECODE} --max-len-a inf",
         "argument --max-len-a: must be a finite number, got 'inf'"),
    case("translate-knn-datastore-without-index", f"{DECODE} --knn-datastore $d/plain",
         "kNN-MT needs both --knn-datastore and --knn-index", plain_folder("plain")),
    case("translate-knn-with-ctranslate2", f"{DECODE} --knn-datastore $d/plain "
         "--knn-index $d/plain", "kNN-MT (--knn-datastore) decodes with --backend torch",
         plain_folder("plain")),
    case("translate-knn-settings-not-a-tuning-result", "translate --backend torch "
         "--model $ckpt --spm $spm --input $src --output $d/out.de --knn-datastore $d/plain "
         "--knn-index $d/plain --knn-settings $json", "$json: not a kNN-MT tuning result",
         plain_folder("plain")),
    case("translate-knn-settings-and-k", "translate --backend torch --model $ckpt --spm $spm "
         "--input $src --output $d/out.de --knn-datastore $d/plain --knn-index $d/plain "
         "--knn-settings $json --knn-k 4", "give --knn-settings or --knn-k, not both",
         plain_folder("plain")),
    case("translate-knn-k-without-datastore", f"{DECODE} --knn-k 4",
         "--knn-k needs --knn-datastore and --knn-index"),
    case("translate-batch-size-0", f"{DECODE} --batch-size 0",
         "argument --batch-size: must be at least 1, got 0"),
    case("translate-batch-size-not-a-number", f"{DECODE} --batch-size many",
         "argument --batch-size: expected a whole number"),
    case("translate-max-length-0", f"{DECODE} --max-length 0",
         "argument --max-length: must be at least 1"),
    case("translate-max-len-a-negative", f"{DECODE} --max-len-a -1",
         "argument --max-len-a: must be 0 or more"),
    case("translate-beam-size-0", f"{DECODE} --beam-size 0",
         "argument --beam-size: must be at least 1"),
    case("translate-threads-0", f"{DECODE} --threads 0", "argument --threads: must be at least 1"),
    case("translate-nbest-without-nbest-output", f"{DECODE} --nbest 4",
         "--nbest needs --nbest-output"),
    case("translate-nbest-output-is-output", f"{DECODE} --nbest 2 --nbest-output $d/out.de",
         "--output and --nbest-output name the same file"),
    case("translate-output-is-the-model", "translate --model $ct2 --input $src --output $ct2",
         "--output and --model name the same file"),
    case("translate-empty-input", "translate --model $ct2 --input $d/empty.txt "
         "--output $d/out.de", "$d/empty.txt: file is empty", text_file("empty.txt", [])),
    case("translate-model-without-model-bin", "translate --model $d/nomodel --input $src "
         "--output $d/out.de", "$d/nomodel: not a CTranslate2 model directory",
         plain_folder("nomodel")),
    case("translate-model-bin-is-garbage", f"{DECODE}", "$ct2: cannot load with device=cpu"),
    # select
    case("select-output-is-references", "select --nbest $tsv --references $tgt --output $tgt",
         "--output and --references name the same file"),
    case("select-nbest-malformed", "select --nbest $d/bad.tsv --references $tgt "
         "--output $d/sel.txt", "$d/bad.tsv, line 1: expected 4 tab-separated fields",
         text_file("bad.tsv", ["0\tonly two"])),
    # speed
    case("speed-repeats-0", "speed --model $ct2 --input $src --output $d/s.json --repeats 0",
         "argument --repeats: must be at least 1"),
    case("speed-output-under-a-regular-file", "speed --model $ct2 --input $src "
         "--output $d/notes.txt/s.json", "$d/notes.txt/s.json: cannot create it",
         regular_file("notes.txt")),
    case("speed-neither-model-nor-models", "speed --input $src --output $d/s.json",
         "give either --model (one model) or --models (several)"),
    case("speed-models-without-a-model-key", 'speed --models {"a":{"dir":"x"}} --input $src '
         "--output $d/s.json", '--models: expected {"name": {"model": DIR, ...}, ...}'),
    case("speed-sentences-0", "speed --model $ct2 --input $src --output $d/s.json "
         "--sentences 0", "argument --sentences: must be at least 1"),
    # evaluate
    case("evaluate-output-is-hypotheses", "evaluate --hypotheses $tgt --references $tgt "
         "--output $tgt --model-name m --testset t", "--output and --hypotheses"),
    case("evaluate-missing-references", "evaluate --hypotheses $tgt --references $d/nope.de "
         "--output $d/e.json --model-name m --testset t", "$d/nope.de: file not found"),
    case("evaluate-metadata-not-an-object", "evaluate --hypotheses $tgt --references $tgt "
         "--output $d/e.json --model-name m --testset t --metadata [1]",
         "argument --metadata: expected a JSON object"),
    case("evaluate-blank-references", "evaluate --hypotheses $tgt --references $d/blank.de "
         "--output $d/e.json --model-name m --testset t",
         "$d/blank.de: every reference line is blank", text_file("blank.de", ["", " ", ""])),
    case("evaluate-empty-hypotheses", "evaluate --hypotheses $d/empty.de --references $tgt "
         "--output $d/e.json --model-name m --testset t", "$d/empty.de: empty file (no lines",
         text_file("empty.de", [])),
    # agreement
    case("agreement-output-is-src", "agreement --model $ckpt --teacher $ckpt --spm $spm "
         "--src $src --ref $tgt --output $src", "--output and --src name the same file"),
    case("agreement-threads-negative", "agreement --model $ckpt --teacher $ckpt --spm $spm "
         "--src $src --ref $tgt --output $d/a.json --threads -1", "--threads"),
    # report
    case("report-output-is-input", "report --inputs $json --output $json",
         "--output and --inputs[0] name the same file"),
    case("report-missing-input", "report --inputs $d/nope.json --output $d/r.md",
         "$d/nope.json: file not found"),
    case("report-input-not-an-object", "report --inputs $d/five.json --output $d/r.md",
         "$d/five.json", text_file("five.json", ["5"])),
    # significance
    case("significance-output-is-the-system", "significance --system $tgt --baseline $tgt "
         "--references $tgt --output $tgt", "--output and --system[0] name the same file"),
    case("significance-line-counts-differ", "significance --system $d/two.txt --baseline $tgt "
         "--references $tgt --output $d/s.json", "line counts differ: $d/two.txt has 2 lines",
         text_file("two.txt", LINES_DE[:2])),
    case("significance-negative-samples", "significance --system $tgt --baseline $tgt "
         "--references $tgt --output $d/s.json --bootstrap-samples -1",
         "argument --bootstrap-samples: must be 0 or more"),
    case("significance-blank-references", "significance --system $tgt --baseline $src "
         "--references $d/blank.de --output $d/s.json",
         "$d/blank.de: every reference line is blank", text_file("blank.de", ["", "", ""])),
    case("significance-empty-system", "significance --system $d/empty.de --baseline $tgt "
         "--references $tgt --output $d/s.json", "$d/empty.de: empty file (no lines",
         text_file("empty.de", [])),
    case("significance-empty-baseline", "significance --system $tgt --baseline $d/empty.de "
         "--references $tgt --output $d/s.json", "$d/empty.de: empty file (no lines",
         text_file("empty.de", [])),
    case("significance-empty-references", "significance --system $tgt --baseline $src "
         "--references $d/empty.de --output $d/s.json", "$d/empty.de: empty file (no lines",
         text_file("empty.de", [])),
    case("significance-one-sentence", "significance --system $d/one.de --baseline $d/one.de "
         "--references $d/one.de --output $d/s.json",
         "$d/one.de: one sentence; a paired significance test needs at least 2",
         text_file("one.de", LINES_DE[:1])),
    # compare
    case("compare-markdown-aliases-csv", "compare --manifest {} --markdown $d/t.md "
         "--csv $d/t.md --latex $d/t.tex", "--markdown and --csv name the same file"),
    case("compare-manifest-not-json", "compare --manifest {oops --markdown $d/t.md "
         "--csv $d/t.csv --latex $d/t.tex", "--manifest: not valid JSON"),
    case("compare-missing-manifest-file", "compare --manifest $d/nope.json --markdown $d/t.md "
         "--csv $d/t.csv --latex $d/t.tex", "--manifest: cannot read $d/nope.json"),
    case("compare-manifest-lacks-keys", "compare --manifest {} --markdown $d/t.md "
         "--csv $d/t.csv --latex $d/t.tex", "manifest"),
    case("compare-markdown-is-the-manifest-file", "compare --manifest $d/manifest.json "
         "--markdown $d/manifest.json --csv $d/t.csv --latex $d/t.tex", "$d/manifest.json",
         manifest_file),
    case("compare-neither-config-nor-manifest", "compare --markdown $d/t.md --csv $d/t.csv "
         "--latex $d/t.tex", "give either --config (a run's saved config) or --manifest"),
    case("compare-config-with-a-duplicate-key", "compare --config $d/config.yaml "
         "--markdown $d/t.md --csv $d/t.csv --latex $d/t.tex", "$d/config.yaml, line 3",
         duplicate_key_config),
    case("compare-config-not-a-run-config", "compare --config $d/c.yaml --markdown $d/t.md "
         "--csv $d/t.csv --latex $d/t.tex", "$d/c.yaml: config error at",
         text_file("c.yaml", ["experiment: x"])),
    case("compare-config-non-finite-number", "compare --config $d/c.yaml --markdown $d/t.md "
         "--csv $d/t.csv --latex $d/t.tex",
         "$d/c.yaml: config error at training.lr: must be a finite number, got inf",
         text_file("c.yaml", ["experiment: x", "training: {lr: .inf}"])),
    case("compare-nan-bleu-in-a-result-file", "compare --manifest $d/m.json --markdown $d/t.md "
         "--csv $d/t.csv --latex $d/t.tex", "beam.json: bleu is NaN, not a finite number",
         lambda d: [text_file(name, [text])(d) for name, text in (
             ("beam.json", '{"bleu": NaN, "chrf": 50.0, "ter": 40.0}'),
             ("m.json", json.dumps({"teacher": "t", "testsets": ["ts"], "speed_testset": "ts",
                                    "beam_size": 5, "models": [{
                                        "name": "t", "ct2": {},
                                        "eval": {"ts": {"beam": "beam.json"}}}]})))]),
    case("compare-infinite-speed-in-a-result-file", "compare --manifest $d/m.json "
         "--markdown $d/t.md --csv $d/t.csv --latex $d/t.tex",
         "speed.json: models.t.fixed.tokens_per_second is Infinity, not a finite number",
         lambda d: [text_file(name, [text])(d) for name, text in (
             ("speed.json", '{"models": {"t": {"tokens_per_second": 900.0, '
                            '"sentences_per_second": 90.0, '
                            '"fixed": {"tokens_per_second": Infinity}}}}'),
             ("m.json", json.dumps({"teacher": "t", "testsets": ["ts"], "speed_testset": "ts",
                                    "beam_size": 5, "models": [{
                                        "name": "t", "ct2": {}, "eval": {"ts": {}},
                                        "speed": {"int8": "speed.json"},
                                        "speed_key": "t"}]})))]),
    case("compare-result-file-lacks-a-field", "compare --manifest $d/m.json --markdown $d/t.md "
         "--csv $d/t.csv --latex $d/t.tex", "result.json: chrf is missing",
         text_file("m.json", [json.dumps({
             "teacher": "t", "testsets": ["ts"], "speed_testset": "ts", "beam_size": 5,
             "models": [{"name": "t", "ct2": {}, "eval": {"ts": {"beam": "result.json"}}}]})])),
    case("compare-result-file-missing", "compare --manifest $d/m.json --markdown $d/t.md "
         "--csv $d/t.csv --latex $d/t.tex", "nope.json: result file not found",
         text_file("m.json", [json.dumps({
             "teacher": "t", "testsets": ["ts"], "speed_testset": "ts", "beam_size": 5,
             "models": [{"name": "t", "ct2": {}, "eval": {"ts": {"k1": "nope.json"}}}]})])),
    case("compare-result-file-not-json", "compare --manifest $d/m.json --markdown $d/t.md "
         "--csv $d/t.csv --latex $d/t.tex", "nbest.tsv: not a JSON result file",
         text_file("m.json", [json.dumps({
             "teacher": "t", "testsets": ["ts"], "speed_testset": "ts", "beam_size": 5,
             "models": [{"name": "t", "ct2": {}, "eval": {"ts": {"beam": "nbest.tsv"}}}]})])),
    case("compare-manifest-file-lacks-a-test-set", "compare --manifest $d/m.json "
         "--markdown $d/t.md --csv $d/t.csv --latex $d/t.tex",
         "$d/m.json: models[1].eval.ts2 is missing",
         text_file("m.json", [json.dumps({
             "teacher": "t", "testsets": ["ts", "ts2"], "speed_testset": "ts", "beam_size": 5,
             "models": [{"name": "t", "ct2": {}, "eval": {"ts": {}, "ts2": {}}},
                        {"name": "s", "ct2": {}, "eval": {"ts": {}}}]})])),
    case("compare-inline-manifest-field-of-the-wrong-type",
         'compare --manifest {"teacher":"t","models":[{"name":"t","eval":{"ts":{}},"ct2":[]}],'
         '"testsets":["ts"],"speed_testset":"ts","beam_size":5} --markdown $d/t.md '
         "--csv $d/t.csv --latex $d/t.tex",
         "--manifest: models[0].ct2 is [], expected an object"),
    case("compare-inline-manifest-lacks-beam-size",
         'compare --manifest {"teacher":"t","models":[{"name":"t","eval":{"ts":{}},"ct2":{}}],'
         '"testsets":["ts"],"speed_testset":"ts"} --markdown $d/t.md --csv $d/t.csv '
         "--latex $d/t.tex", "--manifest: beam_size is missing"),
    # plots
    case("plots-output-is-the-comparison", "plots --config $json --comparison $tsv "
         "--outputs $tsv", "$d/nbest.tsv"),
    case("plots-config-not-a-run-config", "plots --config $d/c.yaml --comparison $tsv "
         "--outputs $d/p/bleu_size.png", "$d/c.yaml: config error at",
         text_file("c.yaml", ["experiment: x"])),
    # plots of a hand-made comparison c.csv (a header, then its rows), with the repository's
    # config.yaml
    *(case(f"plots-{name}", f"plots --config {config} --comparison $d/c.csv "
           f"--outputs $d/p/{plot}.png", f"$d/c.csv{expect}", text_file("c.csv", lines))
      for config in [Path(__file__).resolve().parents[1] / "config.yaml"]
      for header in ["student,model,bleu_beam,bleu_beam_int8,top1_agreement,tok_s_float32,"
                     "tok_s_int8,tok_s_fixed_float32,tok_s_fixed_int8,params,size_float32_mb,"
                     "size_int8_mb"]
      for name, plot, lines, expect in (
          ("empty-comparison", "bleu_size", [header], ": no rows"),
          ("all-nan-comparison", "bleu_size", [header, "t,t,,,,,,,,,,", "s,s,,,,,,,,,,"],
           ": nothing to draw in bleu_size: no row has values in params and bleu_beam, in "
           "size_float32_mb and bleu_beam, or in size_int8_mb and bleu_beam_int8"),
          ("no-bleu-beam-column", "agreement_bleu",
           [header.replace("bleu_beam,", "", 1), "t,t,29,,100,200,,,8e6,4,1"],
           ": no column bleu_beam (not a table of nmtkd compare?)"),
          ("text-in-a-number-column", "bleu_size",
           [header, "t,t,30,29,,100,200,,,8e6,4,1", "s,s,abc,20,,300,600,,,4e6,2,1"],
           ", line 3: bleu_beam is 'abc', not a finite number"),
          ("speed-not-measured-for-a-speed-plot", "bleu_speed_int8",
           [header, "t,t,30,29,80,,,,,8e6,4,1"],
           ": nothing to draw in bleu_speed_int8: no row has values in tok_s_int8 and "
           "bleu_beam_int8"))),
    # check-config
    case("check-config-missing-file", "check-config $d/nope.yaml",
         "$d/nope.yaml: file not found"),
    case("check-config-duplicate-key", "check-config $d/config.yaml",
         "$d/config.yaml, line 3", duplicate_key_config),
    case("check-config-non-finite-number", "check-config $d/c.yaml",
         "config error at students[0].training.lr: must be a finite number, got nan",
         text_file("c.yaml", ["experiment: x", "students:",
                              "  - {name: a, data: gold, training: {lr: .nan}}"])),
    # write-config
    case("write-config-output-is-a-directory", "write-config --json {} --output $d/conf",
         "$d/conf: is a directory", plain_folder("conf")),
    case("write-config-json-not-an-object", "write-config --json [1] --output $d/c.yaml",
         "argument --json: expected a JSON object"),
]
COMMANDS = {"fetch", "clean", "spm-train", "spm-encode", "split", "gather", "train",
            "teacher-signals", "datastore", "knn-index", "knn-targets", "knn-speed", "knn-tune",
            "export",
            "corpus", "expand-nbest", "translate", "select", "speed",
            "evaluate", "significance", "agreement", "report", "compare", "plots",
            "check-config", "write-config"}


def test_the_table_covers_every_command() -> None:
    from nmtkd.cli import build_parser

    covered = {param.values[0].argv.split()[0] for param in CASES}
    assert covered == COMMANDS == set(build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("refused", CASES)
def test_refused_with_one_line_and_nothing_touched(refused: Case, tmp_path: Path) -> None:
    names = standard_files(tmp_path)
    if refused.setup:
        refused.setup(tmp_path)
    argv = [Template(token).substitute(names) for token in refused.argv.split()]
    expected = Template(refused.expect).substitute(names)
    before = snapshot(tmp_path)
    try:
        result = nmtkd(*argv, cwd=tmp_path)
    finally:
        if (tmp_path / "ro").is_dir():
            (tmp_path / "ro").chmod(0o755)
    line = error_line(result, argv[0])
    assert expected in line
    assert snapshot(tmp_path) == before  # inputs unchanged, nothing new, nothing removed
    for name in refused.kept:
        assert (tmp_path / name).is_file()
    assert not SYS_OUTPUT.parent.exists()


# ---- behaviour: what the commands do write ---------------------------------------------------
@pytest.fixture(scope="module")
def ct2_model(trained_tiny: Path, synthetic_spm: Path, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("cli_safety_ct2") / "model"
    export_model(trained_tiny, synthetic_spm, directory, "float32")
    return directory


@pytest.fixture(scope="module")
def sample_text(synthetic, tmp_path_factory) -> tuple[Path, list[str], list[str]]:
    """The first 20 sentences of the synthetic test split, and their references."""
    sources = read_lines(synthetic["test"][0])[:20]
    references = read_lines(synthetic["test"][1])[:20]
    path = write_text_lines(tmp_path_factory.mktemp("cli_safety_text") / "in.txt", sources)
    return path, sources, references


def test_export_twice_replaces_the_first_and_translates(
        trained_tiny: Path, synthetic_spm: Path, sample_text, tmp_path: Path) -> None:
    model = tmp_path / "model"
    export = ["export", "--checkpoint", trained_tiny, "--spm", synthetic_spm, "--output", model]
    assert nmtkd(*export).returncode == 0
    first = (model / "model.bin").stat().st_ino
    stale = tmp_path / ".model.nmtkd-tmp.otherhost.999999.abcdefgh"  # left by a killed export
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "model.bin").write_bytes(b"half-written")
    second = nmtkd(*export)
    assert second.returncode == 0, second.stderr
    assert (model / "model.bin").stat().st_ino != first  # a new export, moved into place
    assert (model / MARKER).read_text().strip() == "export"
    assert sorted(p.name for p in model.iterdir()) == [
        MARKER, "config.json", "model.bin", "shared_vocabulary.json", "spm.model"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the stale one swept

    source, sentences, references = sample_text
    out = tmp_path / "out.txt"
    result = nmtkd("translate", "--model", model, "--input", source, "--output", out,
                   "--beam-size", "2", "--max-length", "100")
    assert result.returncode == 0, result.stderr
    hypotheses = read_lines(out)
    assert len(hypotheses) == len(sentences) == 20
    # the tiny model learnt the task: most of its translations are exactly right
    exact = sum(h == r for h, r in zip(hypotheses, references, strict=True))
    assert exact >= 5, hypotheses  # 8 of 20 when written


def test_translate_nbest_writes_both_files_with_consistent_counts(
        ct2_model: Path, sample_text, tmp_path: Path) -> None:
    source, sentences, _ = sample_text
    out, table = tmp_path / "out.txt", tmp_path / "n.tsv"
    result = nmtkd("translate", "--model", ct2_model, "--input", source, "--output", out,
                   "--nbest", "3", "--nbest-output", table, "--beam-size", "3",
                   "--max-length", "100")
    assert result.returncode == 0, result.stderr
    best = read_lines(out)
    rows = [line.split("\t") for line in read_lines(table)]
    assert len(best) == len(sentences) == 20
    assert len(rows) == 3 * 20
    assert [(int(r[0]), int(r[1])) for r in rows] == [(s, k) for s in range(20) for k in range(3)]
    assert [r[3] for r in rows if r[1] == "0"] == best  # same search: rank 0 is the 1-best
    assert temporaries(tmp_path) == []


def test_translate_failing_after_decoding_leaves_the_old_outputs(
        ct2_model: Path, sample_text, tmp_path: Path, monkeypatch, capsys) -> None:
    """The n-best table fails to write (disk full) after decoding: neither output appears and
    the earlier 1-best file is left as it was."""
    import nmtkd.translate
    from nmtkd.cli import main

    def disk_full(path: Path, hyps) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(nmtkd.translate, "write_nbest", disk_full)
    source, _, _ = sample_text
    out, table = write_text_lines(tmp_path / "out.txt", ["old"]), tmp_path / "n.tsv"
    status = main(["translate", "--model", str(ct2_model), "--input", str(source), "--output",
                   str(out), "--nbest", "3", "--nbest-output", str(table), "--beam-size", "3"])
    assert status == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("nmtkd translate: error: ") and "No space left on device" in last
    assert out.read_text() == "old\n"
    assert not table.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def clean_command(d: Path, src: Path, tgt: Path) -> list[str | Path]:
    return ["clean", "--src", src, "--tgt", tgt, "--out-src", d / "out.en",
            "--out-tgt", d / "out.de", "--report", d / "report.json"]


def test_clean_rerun_replaces_its_previous_outputs(tmp_path: Path) -> None:
    src = write_text_lines(tmp_path / "in.en", [*LINES_EN, LINES_EN[0]])  # one duplicate pair
    tgt = write_text_lines(tmp_path / "in.de", [*LINES_DE, LINES_DE[0]])
    assert nmtkd(*clean_command(tmp_path, src, tgt)).returncode == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["input"], report["kept"], report["dropped"]["duplicate"]) == (4, 3, 1)
    assert read_lines(tmp_path / "out.de") == LINES_DE

    write_text_lines(src, LINES_EN[1:])
    write_text_lines(tgt, LINES_DE[1:])
    result = nmtkd(*clean_command(tmp_path, src, tgt))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["input"], report["kept"], report["dropped"]["duplicate"]) == (2, 2, 0)
    assert read_lines(tmp_path / "out.en") == LINES_EN[1:]
    assert read_lines(tmp_path / "out.de") == LINES_DE[1:]
    assert temporaries(tmp_path) == []


def test_clean_strips_a_utf8_bom(tmp_path: Path) -> None:
    src = tmp_path / "in.en"
    src.write_bytes(b"\xef\xbb\xbf" + "\n".join(LINES_EN).encode() + b"\n")
    tgt = write_text_lines(tmp_path / "in.de", LINES_DE)
    result = nmtkd(*clean_command(tmp_path, src, tgt))
    assert result.returncode == 0, result.stderr
    cleaned = (tmp_path / "out.en").read_text(encoding="utf-8").splitlines()
    assert cleaned == LINES_EN and "\ufeff" not in cleaned[0]
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["kept"], report["bom_stripped"]) == (3, [str(src)])


def test_stale_temporaries_beside_an_output_are_swept(tmp_path: Path) -> None:
    host = socket.gethostname()
    stale = [".out.de.nmtkd-tmp.otherhost.999999.abcdefgh",
             f".out.de.nmtkd-tmp.{host}.4194305.abcdefgh",  # above PID_MAX_LIMIT: long dead
             ".out.de.ab12cd34"]  # an older nmtkd's temporary holding only out.de
    for name in stale:
        write_text_lines(tmp_path / name / "out.de", ["half-written"])
    user = tmp_path / ".out.de.zz99yy88"  # same pattern, but holding a user's file as well
    write_text_lines(user / "out.de", ["kept"])
    write_text_lines(user / "notes.txt", ["mine"])
    live = tmp_path / f".out.de.nmtkd-tmp.{host}.{os.getpid()}.livetest"  # a running process's
    write_text_lines(live / "out.de", ["in progress"])
    src = write_text_lines(tmp_path / "in.en", LINES_EN)
    tgt = write_text_lines(tmp_path / "in.de", LINES_DE)

    result = nmtkd(*clean_command(tmp_path, src, tgt))
    assert result.returncode == 0, result.stderr
    assert read_lines(tmp_path / "out.de") == LINES_DE
    for name in stale:
        assert not (tmp_path / name).exists(), name
    assert read_lines(user / "out.de") == ["kept"] and read_lines(user / "notes.txt") == ["mine"]
    assert read_lines(live / "out.de") == ["in progress"]
    assert temporaries(tmp_path) == [live.name]
    shutil.rmtree(live)


def test_fetch_decompresses_a_gzip_file(tmp_path: Path) -> None:
    src = write_gzip(tmp_path / "c.en.gz", LINES_EN)
    tgt = write_gzip(tmp_path / "c.de.gz", LINES_DE)
    result = nmtkd("fetch", "--src", src, "--tgt", tgt, "--out-src", tmp_path / "o.en",
                   "--out-tgt", tmp_path / "o.de")
    assert result.returncode == 0, result.stderr
    assert read_lines(tmp_path / "o.en") == LINES_EN
    assert read_lines(tmp_path / "o.de") == LINES_DE
    assert temporaries(tmp_path) == []


# ---- inputs that are not what a command expects -------------------------------------------------
@pytest.mark.parametrize("command", ["datastore", "teacher-signals"])
def test_raw_text_instead_of_encoded_pieces_is_refused(command, trained_tiny, synthetic_spm,
                                                       synthetic, tmp_path) -> None:
    """The training corpus given as raw text (not `nmtkd spm-encode`d): nearly every word is
    unknown to the model's SentencePiece vocabulary."""
    from nmtkd.spm import Tokenizer

    raw_src, raw_tgt = synthetic["valid"]
    known = set(Tokenizer(synthetic_spm).vocabulary()) - {"<unk>"}
    words = [word for line in read_lines(raw_src) for word in line.split()]
    share = sum(word not in known for word in words) / len(words)
    assert share > 0.5  # raw words carry no "▁": the premise of the case
    extra = ["--k", "4"] if command == "teacher-signals" else []
    before = snapshot(tmp_path)
    result = nmtkd(command, "--model", trained_tiny, "--train-src", raw_src, "--train-tgt",
                   raw_tgt, "--spm", synthetic_spm, *extra, "--output", tmp_path / "out",
                   "--threads", "1")
    line = error_line(result, command)
    assert f"{raw_src}: {100 * share:.1f}% of its {len(words)} pieces are unknown" in line
    assert snapshot(tmp_path) == before


def long_source(sample_text, tmp_path: Path) -> tuple[Path, int]:
    """The sample sentences with a 1,100-word line in second place (over 1,023 pieces)."""
    _, sentences, _ = sample_text
    words = " ".join(sentences).split()
    long_line = " ".join(words[i % len(words)] for i in range(1100))
    return write_text_lines(tmp_path / "long.txt", [sentences[0], long_line, *sentences[1:]]), \
        len(sentences) + 1


@pytest.mark.parametrize("backend", ["ctranslate2", "torch"])
def test_a_line_longer_than_the_model_positions_is_cut_with_a_warning(
        backend, ct2_model, trained_tiny, synthetic_spm, sample_text, tmp_path) -> None:
    """Both decoders cut a source longer than the model's 1,024 positions (1,023 pieces and
    </s>), as CTranslate2's max_input_length does, and say so naming the line."""
    from nmtkd.spm import Tokenizer

    source, count = long_source(sample_text, tmp_path)
    pieces = len(Tokenizer(synthetic_spm).encode_pieces(read_lines(source)[1:2])[0])
    assert pieces > 1023
    model = ["--model", ct2_model] if backend == "ctranslate2" else [
        "--backend", "torch", "--model", trained_tiny, "--spm", synthetic_spm]
    result = nmtkd("translate", *model, "--input", source, "--output", tmp_path / "out.txt",
                   "--beam-size", "1", "--max-length", "20")
    assert result.returncode == 0, result.stderr
    assert len(read_lines(tmp_path / "out.txt")) == count
    assert (f"{source}: 1 line(s) longer than the model's 1023 source pieces (max_positions "
            f"1024) cut to 1023 pieces; the first is line 2, with {pieces} pieces") \
        in result.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is here")
def test_torch_on_cuda_without_cuda_is_one_line(trained_tiny, synthetic_spm, sample_text,
                                               tmp_path) -> None:
    source, _, _ = sample_text
    result = nmtkd("translate", "--backend", "torch", "--model", trained_tiny, "--spm",
                   synthetic_spm, "--input", source, "--output", tmp_path / "out.txt",
                   "--device", "cuda")
    line = error_line(result, "translate")
    assert "--device is 'cuda' but no CUDA device is available" in line
    assert list(tmp_path.iterdir()) == []


def test_process_substitution_is_named_a_pipe(tmp_path: Path) -> None:
    """`--src <(zcat x.gz)`: the shell passes a pipe as /dev/fd/N; inputs are read twice."""
    read_end, write_end = os.pipe()
    os.write(write_end, "\n".join(LINES_EN).encode() + b"\n")
    os.close(write_end)
    tgt = write_text_lines(tmp_path / "in.de", LINES_DE)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "nmtkd.cli", *map(str, clean_command(
                tmp_path, Path(f"/dev/fd/{read_end}"), tgt))],
            capture_output=True, text=True, pass_fds=(read_end,), timeout=300)
    finally:
        os.close(read_end)
    line = error_line(result, "clean")
    assert f"/dev/fd/{read_end}: is a pipe (FIFO or process substitution)" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.de"]
