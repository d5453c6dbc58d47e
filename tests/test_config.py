import json

import pytest

from banglasenti.config.schema import CONFIG_DIR, Config, ConfigError, config_from_json, load_config, parse_override


@pytest.mark.parametrize("name", ["local.yaml", "banglasenti.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(CONFIG_DIR / name)
    assert cfg.tokenize.buckets[-1] == cfg.tokenize.max_length


def test_full_config_is_the_real_experiment():
    cfg = load_config(CONFIG_DIR / "banglasenti.yaml")
    assert cfg.model.name == "FacebookAI/xlm-roberta-base"
    assert "niloydebbarma-code/banglasenti-dataset-prep" in cfg.data.uri and cfg.data.uri.endswith("banglasenti.csv")
    assert cfg.train.epochs == 10
    assert cfg.train.baseline_learning_rate <= 3e-5 and cfg.train.warmup_ratio > 0


def test_local_config_is_offline():
    cfg = load_config(CONFIG_DIR / "local.yaml")
    assert (cfg.data.uri, cfg.model.name) == ("sample", "tiny")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"train.epochz": 3}, "train.epochz"),
        ({"nonsense": 1}, "nonsense"),
        ({"lora.r": 0}, "lora.r"),
        ({"train.lora_learning_rate": 0}, "train.lora_learning_rate"),
        ({"train.baseline_learning_rate": -1e-5}, "train.baseline_learning_rate"),
        ({"train.epochs": "many"}, "train.epochs"),
        ({"tokenize.buckets": [64, 32, 128]}, "tokenize"),
        ({"tokenize.buckets": [32, 64, 256]}, "tokenize"),
        ({"data.train_fraction": 0.9}, "data"),
        ({"data.label_map": {"pos": 7}}, "data"),
        ({"data.split_method": "random"}, "data.split_method"),
        ({"model.tiny.num_attention_heads": 3}, "model.tiny"),
        ({"lora.target_modules": []}, "lora.target_modules"),
    ],
)
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert f": {key}:" in str(err.value) or f": {key}." in str(err.value)


def test_unknown_key_in_yaml_names_file_and_key(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  epochs: 2\n  learning_rat: 1.0e-4\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: train.learning_rat: unknown key"):
        load_config(path)


def test_yaml_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(
        None,
        [
            "train.epochs=3",
            "lora.target_modules=[query, value]",
            "data.uri=gs://b/x.csv",
            "train.lora_learning_rate=5e-4",
        ],
    )
    assert cfg.train.epochs == 3
    assert cfg.lora.target_modules == ["query", "value"]
    assert cfg.data.uri == "gs://b/x.csv"
    assert cfg.train.lora_learning_rate == pytest.approx(5e-4)


def test_override_needs_key_and_value():
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.epochs")


def test_config_json_round_trip_with_runtime_values():
    cfg = load_config(CONFIG_DIR / "local.yaml")
    rebuilt = config_from_json(cfg.to_json(), {"train.epochs": 1, "lora.r": 4})
    assert (rebuilt.train.epochs, rebuilt.lora.r) == (1, 4)
    assert rebuilt.model_dump() == {
        **cfg.model_dump(),
        "train": {**cfg.train.model_dump(), "epochs": 1},
        "lora": {**cfg.lora.model_dump(), "r": 4},
    }


def test_every_field_has_a_description():
    def walk(model_cls, prefix=""):
        for name, field in model_cls.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, Config.__base__):
                yield from walk(annotation, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", field.description

    missing = [key for key, desc in walk(Config) if not desc]
    assert not missing


def test_defaults_serialise():
    assert json.loads(Config().to_json())["lora"]["r"] == 16


def test_configuration_doc_matches_the_schema():
    from pathlib import Path

    from banglasenti.config.schema import config_reference

    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert doc.endswith(config_reference())
