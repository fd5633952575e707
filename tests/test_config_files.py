"""Config files: strict YAML, data owned by the file that sets it, plain experiment names."""

from pathlib import Path

import pytest
import yaml

from nmtkd.configfiles import (
    check_experiment_name,
    load_yaml,
    merge_config_files,
    schema_error,
)
from nmtkd.errors import NmtkdError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
MIRROR = "../shared/data/multi30k"


def en_fr_override() -> dict:
    """What a user writes for En->Fr from the same mirror (no test-set checksums)."""
    base = "https://github.com/multi30k/dataset/raw/master/data/task1/raw"
    return {
        "experiment": "multi30k_en_fr",
        "data": {
            "mirror": MIRROR, "src_lang": "en", "tgt_lang": "fr",
            "train": {"src": f"{base}/train.en.gz", "tgt": f"{base}/train.fr.gz"},
            "valid": {"src": f"{base}/val.en.gz", "tgt": f"{base}/val.fr.gz"},
            "test": {"test_2016_flickr": {"src": f"{base}/test_2016_flickr.en.gz",
                                          "tgt": f"{base}/test_2016_flickr.fr.gz"}},
        },
    }


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_syntax_error_names_file_line_and_column(tmp_path):
    bad = write(tmp_path / "my.yaml", "experiment: x\ndata:\n  src_lang: en\n   tgt_lang: fr\n")
    with pytest.raises(NmtkdError, match=r"my.yaml, line 4, column 12: mapping values are not "
                                         r"allowed here"):
        load_yaml(bad)


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    dup = write(tmp_path / "dup.yaml", "experiment: a\ndata:\n  src_lang: en\n  src_lang: de\n")
    with pytest.raises(NmtkdError, match=r"dup.yaml, line 4, column 3: duplicate key "
                                         r"'src_lang' \(first on line 3\)"):
        load_yaml(dup)
    # anchors and merge keys are still fine
    fine = write(tmp_path / "ok.yaml", "a: &x {p: 1}\nb:\n  <<: *x\n  q: 2\n")
    assert load_yaml(fine) == {"a": {"p": 1}, "b": {"p": 1, "q": 2}}


def test_an_override_that_sets_data_owns_it(tmp_path):
    override = write(tmp_path / "my.yaml", yaml.safe_dump(en_fr_override()))
    config = merge_config_files(REPO / "config.yaml", [override])
    data = config["data"]
    assert list(data["test"]) == ["test_2016_flickr"]
    assert data["test"]["test_2016_flickr"]["tgt"].endswith(".fr.gz")
    # no checksum of the default's German files leaked into the French data
    assert "sha256" not in yaml.safe_dump(data)
    assert config["experiment"] == "multi30k_en_fr"
    # everything else still comes from config.yaml
    assert config["students"] == load_yaml(REPO / "config.yaml")["students"]
    assert schema_error(config, SCHEMA) is None


def test_an_override_without_data_merges_as_before(tmp_path):
    override = write(tmp_path / "fast.yaml", "training: {max_updates: 10}\n")
    config = merge_config_files(REPO / "config.yaml", [override], {"experiment": "quick"})
    default = load_yaml(REPO / "config.yaml")
    assert config["data"] == default["data"]
    assert config["training"]["max_updates"] == 10
    assert config["training"]["lr"] == default["training"]["lr"]
    assert config["experiment"] == "quick"  # --config values come last


def test_an_override_with_data_must_name_its_experiment(tmp_path):
    override = en_fr_override()
    del override["experiment"]
    path = write(tmp_path / "my.yaml", yaml.safe_dump(override))
    with pytest.raises(NmtkdError, match=r"config error at experiment: .*my.yaml sets data but "
                                         r"not experiment.*results/multi30k_en_de/"):
        merge_config_files(REPO / "config.yaml", [path])


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "/tmp/x", "-x", "a b", ""])
def test_experiment_names_are_plain(name):
    with pytest.raises(NmtkdError, match="config error at experiment: .*not a plain name"):
        check_experiment_name({"experiment": name})


def test_plain_experiment_names_pass():
    for name in ("multi30k_en_de", "run.2", "A-1"):
        check_experiment_name({"experiment": name})


def test_schema_errors_are_one_line_naming_the_key():
    config = load_yaml(REPO / "config.yaml")
    config["experiment"] = 5
    assert schema_error(config, SCHEMA) == "config error at experiment: 5 is not of type 'string'"
    config = load_yaml(REPO / "config.yaml")
    config["students"][2]["presett"] = "student"
    message = schema_error(config, SCHEMA)
    assert message.startswith("config error at students[2]: ")
    assert "presett" in message and "\n" not in message
