import json

import pandas as pd
import pytest
import torch

from banglasenti.config.schema import ModelConfig, TinyModelConfig
from banglasenti.models.backbone import (
    SPECIAL_TOKENS,
    masked_lm_loss,
    resolve_base_model,
    tiny_model_config,
    train_unigram_tokenizer,
)
from banglasenti.storage.artifacts import ARTIFACT_MANIFEST, InputError, content_digest


@pytest.fixture(scope="module")
def train_texts(prepared_dir) -> list[str]:
    return pd.read_parquet(prepared_dir / "train.parquet")["text"].tolist()


def test_unigram_tokenizer_follows_xlmr_conventions(train_texts):
    tok = train_unigram_tokenizer(train_texts, 1000)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    ids = tok(train_texts[0])["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2
    assert tok.decode(ids, skip_special_tokens=True) == train_texts[0]
    assert tok.unk_token_id not in tok(train_texts[1])["input_ids"]


def test_tiny_config_has_xlmr_invariants():
    config = tiny_model_config(TinyModelConfig(), 1234)
    assert (config.vocab_size, config.max_position_embeddings, config.type_vocab_size) == (1234, 514, 1)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (1, 0, 2)
    assert config.layer_norm_eps == 1e-5
    assert config.model_type == "xlm-roberta"


@pytest.mark.parametrize("training", [False, True])
def test_masked_lm_loss_is_the_models_own_loss(training):
    """The head over the masked positions alone gives the loss and the gradients of the full forward (to float
    rounding), with dropout too: both draw the same random numbers in the same order."""
    from transformers import XLMRobertaForMaskedLM

    torch.manual_seed(0)
    model = XLMRobertaForMaskedLM(tiny_model_config(TinyModelConfig(hidden_size=32, intermediate_size=64), 300))
    model.train(training)
    input_ids = torch.randint(5, 300, (4, 12))
    labels = torch.full_like(input_ids, -100)
    labels[:, ::3] = input_ids[:, ::3]
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    before = {k: v.clone() for k, v in batch.items()}
    grads = []
    for loss_of in (lambda: model(**batch).loss, lambda: masked_lm_loss(model, batch)):
        model.zero_grad()
        torch.manual_seed(1)
        loss = loss_of()
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (full, full_grads), (masked, masked_grads) = grads
    torch.testing.assert_close(masked, full)
    for a, b in zip(masked_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert batch.keys() == before.keys() and all(torch.equal(batch[k], before[k]) for k in batch)


def test_tiny_base_is_pretrained_and_loads_as_a_classifier(base_dir, fast_cfg):
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    meta = json.loads((base_dir / "config.json").read_text())
    assert meta["architectures"] == ["XLMRobertaForMaskedLM"]
    assert meta["num_hidden_layers"] == fast_cfg.model.tiny.num_hidden_layers
    mlm = AutoModelForMaskedLM.from_pretrained(base_dir)
    clf = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=3)
    assert torch.equal(mlm.roberta.embeddings.word_embeddings.weight, clf.roberta.embeddings.word_embeddings.weight)


def test_pretraining_lowers_the_masked_lm_loss(train_texts, tmp_path):
    cfg = TinyModelConfig(hidden_size=64, intermediate_size=128, pretrain_steps=60, vocab_size=800)
    meta = resolve_base_model(ModelConfig(name="tiny", tiny=cfg), train_texts, 128, tmp_path / "m")
    assert meta["pretrain_steps"] == 60
    assert meta["pretrain_loss_last"] < meta["pretrain_loss_first"] - 0.5
    assert meta["content_sha256"] == content_digest(tmp_path / "m")


def test_a_tiny_base_without_pretraining_says_what_it_did(train_texts, tmp_path, capsys):
    cfg = TinyModelConfig(hidden_size=32, intermediate_size=64, pretrain_steps=0, vocab_size=500)
    meta = resolve_base_model(ModelConfig(name="tiny", tiny=cfg), train_texts, 128, tmp_path / "m")
    assert meta["pretrain_steps"] == 0
    err = capsys.readouterr().err
    assert "0 steps (at most" in err and "pre-trained" not in err and "base model tiny (tiny) ready" in err


def test_tiny_base_is_reproducible(train_texts, tmp_path):
    cfg = ModelConfig(
        name="tiny", tiny=TinyModelConfig(hidden_size=32, intermediate_size=64, pretrain_steps=5, vocab_size=500)
    )
    a = resolve_base_model(cfg, train_texts, 64, tmp_path / "a")
    b = resolve_base_model(cfg, train_texts, 64, tmp_path / "b")
    assert a["content_sha256"] == b["content_sha256"]


def test_local_directory_is_copied_with_its_hash(base_dir, tmp_path):
    meta = resolve_base_model(ModelConfig(name=str(base_dir)), [], 128, tmp_path / "copy")
    assert meta["kind"] == "local"
    assert meta["content_sha256"] == content_digest(base_dir)


def test_gcs_directory_is_downloaded(base_dir, tmp_path, gcs_emulator):
    from banglasenti.storage.artifacts import gcs_client

    bucket = gcs_client().create_bucket("models")
    for file in base_dir.iterdir():
        bucket.blob(f"tiny/{file.name}").upload_from_filename(str(file))
    meta = resolve_base_model(ModelConfig(name="gs://models/tiny"), [], 128, tmp_path / "from-gcs")
    assert meta["kind"] == "gcs"
    assert meta["content_sha256"] == content_digest(base_dir)
    with pytest.raises(InputError, match="no objects"):
        resolve_base_model(ModelConfig(name="gs://models/absent"), [], 128, tmp_path / "none")
    assert not (tmp_path / "none").exists()
    # a base-model artifact whose writer was killed (its manifest still says "writing") is refused
    for file in base_dir.iterdir():
        bucket.blob(f"partial/{file.name}").upload_from_filename(str(file))
    bucket.blob(f"partial/{ARTIFACT_MANIFEST}").upload_from_string('{"state": "writing"}')
    with pytest.raises(InputError, match="gs://models/partial: uncommitted directory artifact"):
        resolve_base_model(ModelConfig(name="gs://models/partial"), [], 128, tmp_path / "none")


@pytest.mark.parametrize(
    ("files", "message"),
    [({}, "no config.json"), ({"config.json": "{}", "pytorch_model.bin": "x"}, r"no \*\.safetensors")],
)
def test_bad_model_directories_are_rejected(tmp_path, files, message):
    source = tmp_path / "src"
    source.mkdir()
    for name, content in files.items():
        (source / name).write_text(content)
    with pytest.raises(InputError, match=message):
        resolve_base_model(ModelConfig(name=str(source)), [], 128, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_local_path_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no such model directory"):
        resolve_base_model(ModelConfig(name=str(tmp_path / "nope")), [], 128, tmp_path / "out")


def test_hub_model_is_downloaded_at_its_resolved_commit(tmp_path, monkeypatch, base_dir):
    """The Hub cannot be reached here: check what is asked of huggingface_hub and what is recorded."""
    import huggingface_hub

    calls = {}

    class FakeApi:
        def model_info(self, name, revision=None):
            calls["info"] = (name, revision)
            return type("Info", (), {"sha": "a" * 40})()

    def fake_snapshot(repo_id, revision, local_dir, allow_patterns):
        calls["snapshot"] = (repo_id, revision, allow_patterns)
        for file in base_dir.iterdir():
            (local_dir / file.name).write_bytes(file.read_bytes())

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    meta = resolve_base_model(
        ModelConfig(name="FacebookAI/xlm-roberta-base", revision="main"), [], 128, tmp_path / "hub"
    )
    assert calls["info"] == ("FacebookAI/xlm-roberta-base", "main")
    assert calls["snapshot"][:2] == ("FacebookAI/xlm-roberta-base", "a" * 40)
    assert "*.safetensors" in calls["snapshot"][2] and not any("bin" in p for p in calls["snapshot"][2])
    assert meta == {
        "base_model": "FacebookAI/xlm-roberta-base",
        "kind": "hub",
        "revision": "a" * 40,
        "content_sha256": content_digest(tmp_path / "hub"),
    }
