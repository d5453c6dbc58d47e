"""Safe loading and no secrets: no remote code, no pickles, no credential-like strings in configs, specs or
artifacts, file names from untrusted text sanitised."""

import ast
import re
from pathlib import Path

import pytest

from banglasenti.config.schema import CONFIG_DIR
from banglasenti.storage.artifacts import InputError, require_model_dir, safe_name
from pipelines.compile import compile_pipeline

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for package in ("banglasenti", "components", "pipelines") for p in sorted((ROOT / package).rglob("*.py"))]

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "service-account key": re.compile(r'"private_key(_id)?"\s*:'),
    "Google API key": re.compile(r"AIza[0-9A-Za-z_\-]{35}"),
    "OAuth token": re.compile(r"ya29\.[0-9A-Za-z_\-]{20,}"),
    "AWS key": re.compile(r"AKIA[0-9A-Z]{16}"),
    "Hugging Face token": re.compile(r"hf_[A-Za-z0-9]{30,}"),
    "GitHub token": re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}"),
    "password or secret": re.compile(r"(?i)(password|passwd|client_secret|api_key|access_token)\s*[:=]\s*\S+"),
}


def secrets_in(text: str) -> list[str]:
    return [name for name, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


def calls(name: str):
    """(file, call node) for every call of a function or method called `name` in our sources."""
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == name:
                    yield path, node


def keyword(node: ast.Call, name: str):
    found = [k.value for k in node.keywords if k.arg == name]
    return found[0].value if found and isinstance(found[0], ast.Constant) else ("<absent>" if not found else "<expr>")


def test_no_remote_code_and_no_unsafe_torch_load():
    for path, node in calls("from_pretrained"):
        assert keyword(node, "trust_remote_code") in ("<absent>", False), f"{path}:{node.lineno}"
    for path, node in calls("load"):
        if isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", None) == "torch":
            assert keyword(node, "weights_only") is True, f"{path}:{node.lineno}: torch.load without weights_only"
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        assert "trust_remote_code=True" not in text and "import pickle" not in text, path


def test_model_loading_sites_insist_on_safetensors_without_hub_kernels():
    from banglasenti.models.modeling import LOAD_OPTIONS

    sites = [
        (p, n)
        for p, n in calls("from_pretrained")
        if p.name == "modeling.py" and getattr(n.func.value, "id", "") == "AutoModelForSequenceClassification"
    ]
    assert len(sites) == 2
    for path, node in sites:
        spread = [k.value.id for k in node.keywords if k.arg is None and isinstance(k.value, ast.Name)]
        assert spread == ["LOAD_OPTIONS"], f"{path}:{node.lineno}: load with **LOAD_OPTIONS"
    assert LOAD_OPTIONS == {"use_safetensors": True, "use_kernels": False}


def test_pickled_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(InputError, match="no \\*.safetensors weights"):
        require_model_dir(tmp_path)


@pytest.mark.parametrize("mode", ["lora", "baseline"])
def test_trained_artifacts_hold_no_pickles_or_secrets(trained, mode):
    model_dir, summary = trained[mode]
    names = [p.name for p in model_dir.rglob("*") if p.is_file()]
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))], names
    for path in model_dir.rglob("*.json"):
        assert not secrets_in(path.read_text(encoding="utf-8")), path


@pytest.mark.component
def test_configs_and_compiled_spec_hold_no_secrets(tmp_path):
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        assert not secrets_in(path.read_text(encoding="utf-8")), path
    spec = compile_pipeline(CONFIG_DIR / "banglasenti.yaml", tmp_path / "p.yaml", "vertex")
    assert not secrets_in(spec.read_text(encoding="utf-8"))


def test_the_secret_scan_finds_planted_secrets():
    planted = [
        '{"type": "service_account", "private_key_id": "abc"}',
        "-----BEGIN RSA PRIVATE KEY-----",
        "key: AIza" + "A" * 35,
        "token ya29." + "b" * 30,
        "hf_" + "c" * 34,
        "password: hunter2",
    ]
    assert all(secrets_in(text) for text in planted)
    assert not secrets_in("model:\n  name: FacebookAI/xlm-roberta-base\nlora_r: 16\n")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("data.csv", "data.csv"),
        ("..", "download"),
        ("../../etc/passwd", "etc_passwd"),
        ("", "download"),
        ("a b;rm -rf ~.csv", "a_b_rm_-rf_.csv"),
        (".hidden", "hidden"),
        ("বাংলা.csv", "csv"),
    ],
)
def test_file_names_from_untrusted_text_are_sanitised(raw, expected):
    assert safe_name(raw) == expected


def test_hub_downloads_fetch_no_pickled_weights():
    from fnmatch import fnmatch

    from banglasenti.models.backbone import MODEL_FILE_PATTERNS

    def fetched(name):
        return any(fnmatch(name, pattern) for pattern in MODEL_FILE_PATTERNS)

    assert fetched("model.safetensors") and fetched("config.json") and fetched("sentencepiece.bpe.model")
    assert not [
        n
        for n in (
            "pytorch_model.bin",
            "tf_model.h5",
            "model.pt",
            "flax_model.msgpack",
            "model.ckpt",
            "training_args.bin",
            "modeling_custom.py",
        )
        if fetched(n)
    ]
