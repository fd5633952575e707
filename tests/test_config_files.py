"""Config files: strict YAML, data owned by the file that sets it, plain experiment names."""

from pathlib import Path

import pytest
import yaml

from nmtkd.configfiles import (
    check_experiment_name,
    load_yaml,
    merge_config_files,
    resolve_config,
    schema_error,
    with_defaults,
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


def test_an_explicit_key_overrides_a_merged_one_but_not_another_explicit_one(tmp_path):
    text = ("fine_tune: &ft {lr: 0.001, warmup: 50}\n"
            "other: &o {seed: 3, device: cpu}\n"
            "a:\n  <<: *ft\n  lr: 0.0002\n"
            "b:\n  <<: [*ft, *o]\n  seed: 4\n")
    assert load_yaml(write(tmp_path / "merge.yaml", text)) == {
        "fine_tune": {"lr": 0.001, "warmup": 50}, "other": {"seed": 3, "device": "cpu"},
        "a": {"lr": 0.0002, "warmup": 50},  # the explicit lr wins, as YAML defines
        "b": {"lr": 0.001, "warmup": 50, "seed": 4, "device": "cpu"}}
    twice = write(tmp_path / "twice.yaml", "x: &x {lr: 1}\na:\n  <<: *x\n  lr: 2\n  lr: 3\n")
    with pytest.raises(NmtkdError, match=r"twice.yaml, line 5, column 3: duplicate key 'lr' "
                                         r"\(first on line 4\)"):
        load_yaml(twice)


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


def test_a_file_that_sets_students_owns_the_studies(tmp_path):
    mine = write(tmp_path / "mine.yaml", "students:\n  - {name: gold_only, data: gold}\n"
                                          "  - {name: distilled, data: seqkd}\n")
    config = merge_config_files(REPO / "config.yaml", [mine])
    assert [s["name"] for s in config["students"]] == ["gold_only", "distilled"]
    # config.yaml's studies, selection and baseline name its own students: dropped
    assert "studies" not in config and "study" not in config
    assert config["comparison"] == {}
    assert config["knn"] == load_yaml(REPO / "config.yaml")["knn"]  # the rest merges
    # its own studies, and a later file without students, are kept
    studies = write(tmp_path / "studies.yaml", "studies:\n  mine: {students: [distilled]}\n"
                                               "comparison: {baseline: distilled}\n")
    later = write(tmp_path / "later.yaml", "study: mine\n")
    config = merge_config_files(REPO / "config.yaml", [mine, studies, later])
    assert config["studies"] == {"mine": {"students": ["distilled"]}}
    assert config["study"] == "mine" and config["comparison"] == {"baseline": "distilled"}
    assert merge_config_files(REPO / "config.yaml", [mine], {"study": "x"})["study"] == "x"


def test_non_finite_numbers_are_refused_by_key(tmp_path):
    cases = [("training:\n  lr: .nan\n", "training.lr: must be a finite number, got nan"),
             ("cleaning: {max_length_ratio: .inf}\n",
              "cleaning.max_length_ratio: must be a finite number, got inf"),
             ("evaluation: {length_penalty: -.Inf}\n",
              "evaluation.length_penalty: must be a finite number, got -inf"),
             ("students:\n  - {name: a, data: gold, training: {lr: .NaN}}\n",
              "students[0].training.lr: must be a finite number, got nan")]
    for text, expected in cases:
        override = write(tmp_path / "bad.yaml", text)
        config = merge_config_files(REPO / "config.yaml", [override])
        with pytest.raises(NmtkdError) as error:
            resolve_config(config, SCHEMA)
        assert str(error.value) == f"config error at {expected}"
    # a --config value too (Snakemake parses `x=nan` with float())
    with pytest.raises(NmtkdError, match=r"^config error at seed: must be a finite number"):
        resolve_config({**load_yaml(REPO / "config.yaml"), "seed": float("nan")}, SCHEMA)


def test_a_type_error_in_a_config_value_says_it_came_from_config_as_text():
    config = load_yaml(REPO / "config.yaml")
    command_line = {"training": {"lr": "0.1"}}  # what `--config 'training={lr: 0.1}'` gives
    config["training"]["lr"] = "0.1"
    assert schema_error(config, SCHEMA, command_line) == (
        "config error at training.lr: '0.1' is not of type 'number' (from --config, which "
        "gives the values inside {...} as text: set nested keys in a --configfile)")
    assert schema_error(config, SCHEMA) == (
        "config error at training.lr: '0.1' is not of type 'number'")  # from a file
    config["training"] = "fast"
    assert schema_error(config, SCHEMA, {"training": "fast"}).endswith(
        "'fast' is not of type 'object' (from --config, which gave it as text: set nested keys "
        "in a --configfile)")


def test_defaults_are_filled_as_snakemake_fills_them():
    from snakemake.utils import validate

    config = load_yaml(REPO / "config.yaml")
    del config["cleaning"], config["evaluation"]["speed"]
    config["students"][0]["training"] = {}
    filled = with_defaults(config, load_yaml(SCHEMA))
    assert "cleaning" not in config  # the given config is left as it was
    assert filled["cleaning"] == {"max_tokens": 100, "max_length_ratio": 3.0,
                                  "drop_src_equals_tgt": False, "deduplicate": True}
    assert filled["evaluation"]["speed"] == {"threads": 2, "inter_threads": 1, "beam_size": 5,
                                             "batch_size": 32, "repeats": 3, "sentences": 500}
    assert resolve_config(config, SCHEMA) == filled
    for variant in (config, merge_config_files(REPO / "config.yaml",
                                               [REPO / "config.gpu.yaml"])):
        by_snakemake = yaml.safe_load(yaml.safe_dump(variant))
        validate(by_snakemake, str(SCHEMA))
        assert with_defaults(variant, load_yaml(SCHEMA)) == by_snakemake


def test_the_gpu_config_has_the_default_studies() -> None:
    """config.gpu.yaml sets its own students, so it owns the studies: it must carry the same
    studies as config.yaml (names, students, baselines) and select kim_rush."""
    from nmtkd.plan import read_workflow_plan

    default = read_workflow_plan(REPO / "config.yaml", [], {"study": "all"}, SCHEMA)
    gpu = read_workflow_plan(REPO / "config.yaml", [REPO / "config.gpu.yaml"],
                             {"study": "all"}, SCHEMA)
    assert {name: (s.students, s.baseline, s.knn_mt) for name, s in gpu.studies.items()} == {
        name: (s.students, s.baseline, s.knn_mt) for name, s in default.studies.items()}
    selected = read_workflow_plan(REPO / "config.yaml", [REPO / "config.gpu.yaml"], None, SCHEMA)
    assert list(selected.studies) == ["kim_rush"]
    assert len(selected.students) == 7
