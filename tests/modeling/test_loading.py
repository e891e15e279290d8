"""t2t.modeling.loading: t2t-tiny, models, tokenizers, LoRA and adapters, the corpus recipe, precision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from t2t.errors import T2TError
from t2t.modeling.loading import (
    apply_lora,
    choose_precision,
    corpus_recipe,
    load_adapter,
    load_model,
    load_tokenizer,
    resolve_model,
)

T5_LINEAR = {"q", "k", "v", "o", "wi_0", "wi_1", "wo"}


@pytest.fixture(autouse=True)
def no_task_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T2T_TASK_PATH", raising=False)


@pytest.fixture(scope="module")
def tiny() -> str:
    return resolve_model("t2t-tiny")


def block_linears(model: torch.nn.Module) -> set[str]:
    """Names of every nn.Linear inside the encoder and decoder blocks."""
    return {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".block." in n}


def lora_layers(model: torch.nn.Module) -> set[str]:
    prefix = "base_model.model."
    return {n.removeprefix(prefix) for n, m in model.named_modules() if hasattr(m, "lora_A") and len(m.lora_A)}


# -- models and tokenizers ---------------------------------------------------------------------------

def test_t2t_tiny_resolves_to_a_loadable_folder(tiny: str) -> None:
    from transformers import T5ForConditionalGeneration

    folder = Path(tiny)
    assert folder.is_dir() and (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert resolve_model("t2t-tiny") == tiny  # cached: the same folder again
    model = load_model(tiny)
    assert isinstance(model, T5ForConditionalGeneration) and model.config.is_encoder_decoder
    assert next(model.parameters()).dtype == torch.float32
    tok = load_tokenizer(tiny)
    ids = tok("Is this review positive? OPTIONS:\n- yes\n- no")["input_ids"]
    assert ids[-1] == tok.eos_token_id == 1
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids[:3]]))
    assert out.logits.shape == (1, 3, model.config.vocab_size) and torch.isfinite(out.loss)


def test_other_names_pass_through(tmp_path: Path) -> None:
    assert resolve_model("google/flan-t5-base") == "google/flan-t5-base"
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_load_model_dtype_and_attention(tiny: str) -> None:
    model = load_model(tiny, attn_implementation="sdpa", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config._attn_implementation == "sdpa"


def test_decoder_only_model_loads_as_causal_lm(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=16, n_positions=16)).save_pretrained(
        tmp_path)
    model = load_model(str(tmp_path))
    assert isinstance(model, GPT2LMHeadModel) and not model.config.is_encoder_decoder


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(T2TError) as info:
        load_model(str(tmp_path))
    message = str(info.value)
    assert message.startswith(f"--model {tmp_path}: not a model name or folder (")
    assert message.endswith("use a hub name (google/flan-t5-base), a local folder, or t2t-tiny")
    assert "\n" not in message
    with pytest.raises(T2TError, match=r"^--model /no/such/dir/here: not a model name or folder"):
        load_model("/no/such/dir/here")


def test_only_safetensors_weights_are_read(tmp_path: Path, tiny: str) -> None:
    from transformers import T5Config

    config = T5Config.from_pretrained(tiny)
    config.save_pretrained(tmp_path)
    with pytest.raises(T2TError, match=r"cannot load safetensors weights .*t2t reads only safetensors$"):
        load_model(str(tmp_path))
    torch.save(load_model(tiny).state_dict(), tmp_path / "pytorch_model.bin")  # a pickle: never read
    with pytest.raises(T2TError, match=r"^--model .*: cannot load safetensors weights"):
        load_model(str(tmp_path))


def test_tokenizer_errors(tmp_path: Path) -> None:
    with pytest.raises(T2TError) as info:
        load_tokenizer(str(tmp_path))
    assert str(info.value).startswith(f"--model {tmp_path}: cannot load its tokenizer (")
    assert str(info.value).endswith("give a hub name, a local model folder, or t2t-tiny for the offline model")


# -- LoRA and adapters ---------------------------------------------------------------------------------

def test_lora_targets_every_linear_layer_of_the_t5_blocks(tiny: str) -> None:
    base = load_model(tiny)
    linears = block_linears(base)
    assert {n.rsplit(".", 1)[-1] for n in linears} == T5_LINEAR
    layers = base.config.num_layers, base.config.num_decoder_layers
    assert len(linears) == 7 * layers[0] + 11 * layers[1]  # decoder: self and cross attention, gated FFN
    model = apply_lora(base, r=4, alpha=8, dropout=0.0)
    assert lora_layers(model) == linears
    assert "lm_head" not in {n.rsplit(".", 1)[-1] for n in lora_layers(model)}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert model.peft_config["default"].r == 4 and model.peft_config["default"].lora_alpha == 8


def test_lora_on_named_layers_only(tiny: str) -> None:
    model = apply_lora(load_model(tiny), r=2, alpha=4, dropout=0.0, target_modules=["q", "wo"])
    assert {n.rsplit(".", 1)[-1] for n in lora_layers(model)} == {"q", "wo"}
    assert len(lora_layers(model)) == 3 * 2 + 3 * 3  # q: encoder self, decoder self and cross; wo: every FFN


def test_unknown_target_module_is_a_t2t_error(tiny: str) -> None:
    with pytest.raises(T2TError) as info:
        apply_lora(load_model(tiny), r=2, alpha=4, dropout=0.0, target_modules=["q", "q_proj", "fc1"])
    assert str(info.value).startswith("--target-modules: ['q_proj', 'fc1'] not in this model")


@pytest.mark.parametrize("target", ["dropout", "layer_norm"])
def test_non_linear_target_module_is_a_t2t_error(tiny: str, target: str) -> None:
    with pytest.raises(T2TError, match="--target-modules"):
        apply_lora(load_model(tiny), r=2, alpha=4, dropout=0.0, target_modules=[target])


def test_saved_adapter_loads_for_inference(tiny: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    tuned = apply_lora(load_model(tiny), r=4, alpha=8, dropout=0.0).eval()
    with torch.no_grad():
        for name, param in tuned.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # peft starts B at zero: make the adapter change something
    tuned.save_pretrained(tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    ids = torch.tensor([[5, 6, 7, 8, 1]])
    labels = torch.tensor([[9, 10, 1]])
    with torch.no_grad():
        want = tuned(input_ids=ids, labels=labels).logits
        base_logits = load_model(tiny).eval()(input_ids=ids, labels=labels).logits
        loaded = load_adapter(load_model(tiny), str(tmp_path / "adapter")).eval()
        got = loaded(input_ids=ids, labels=labels).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, base_logits, atol=1e-3)
    assert not any(p.requires_grad for p in loaded.parameters())  # loaded for inference


def test_adapter_folder_errors(tmp_path: Path, tiny: str) -> None:
    with pytest.raises(T2TError) as info:
        load_adapter(torch.nn.Linear(1, 1), str(tmp_path))
    assert str(info.value) == (f"--adapter {tmp_path}: no adapter_config.json there (point at the folder that "
                               "t2t.finetune printed)")
    apply_lora(load_model(tiny), r=2, alpha=4, dropout=0.0).save_pretrained(tmp_path / "a")
    (tmp_path / "a" / "adapter_model.safetensors").rename(tmp_path / "a" / "adapter_model.bin")
    with pytest.raises(T2TError) as info:
        load_adapter(load_model(tiny), str(tmp_path / "a"))
    assert str(info.value) == (f"--adapter {tmp_path / 'a'}: no adapter_model.safetensors (t2t reads only "
                               "safetensors)")


# -- the corpus recipe and precision --------------------------------------------------------------------

def test_corpus_recipe_is_stable_and_follows_the_task_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    builtin = corpus_recipe()
    assert builtin == corpus_recipe() and len(builtin) == 64
    assert corpus_recipe([str(tasks)]) == builtin  # an empty folder adds nothing
    task = tasks / "mine.jinja"
    task.write_text("---\ncluster: qa\nsource: {generator: arith_sum}\n---\n"
                    "{% block a %}{{ a }} plus {{ b }} ||| {{ total }}{% endblock %}\n")
    first = corpus_recipe([str(tasks)])
    assert first != builtin and first == corpus_recipe([str(tasks)])
    task.write_text(task.read_text().replace("plus", "and"))
    edited = corpus_recipe([str(tasks)])
    assert edited not in (builtin, first)
    (tasks / "_lib").mkdir()
    (tasks / "_lib" / "m.jinja").write_text("{% macro m() %}x{% endmacro %}")  # macros shape the corpus too
    assert corpus_recipe([str(tasks)]) not in (builtin, first, edited)
    (tasks / "_lib" / "m.jinja").unlink()
    task.write_text(task.read_text().replace(" and ", " plus "))
    assert corpus_recipe([str(tasks)]) == first  # the same files give the same digest
    monkeypatch.setenv("T2T_TASK_PATH", str(tasks))  # a folder on the path is searched as well
    assert corpus_recipe() == first


def test_choose_precision() -> None:
    assert choose_precision("fp32") == "no"
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        assert choose_precision("auto") == choose_precision("bf16") == "bf16"
        return
    assert choose_precision("auto") == "no"
    with pytest.raises(T2TError) as info:
        choose_precision("bf16")
    assert str(info.value) == "--precision bf16 needs a GPU with bf16 support; use auto or fp32"
