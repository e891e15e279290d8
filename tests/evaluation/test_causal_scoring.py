"""Causal (decoder-only) scoring on a tiny random Llama: lm-eval HFLM parity, fast path vs naive,
t2t's training-target convention, batched generation, and ``python -m t2t.evaluate`` end to end."""

from __future__ import annotations

import json

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from t2t.data.causal import tokenize_causal
from t2t.data.chat import chat_prompt
from t2t.errors import T2TError, run_cli
from t2t.evaluation.causal_scoring import DEFAULT_STOP, StopOnStrings, encode_requests, prompt_ids, score_pairs
from t2t.evaluation.scoring import generate, generate_ids, predict, score_choices, score_choices_naive
from tests.causal_tiny import make_gpt2, make_llama, make_tokenizer, save_model_folder

# Contexts with one and two trailing spaces, a trailing newline, an empty one, and "Sentiment: posi" whose
# choice "tive and ..." with an empty delimiter merges with it into "Ġpositi" + "ve" (a token across the join).
INPUTS = ["Review: the film was great fun. Sentiment:", "Question: what is the sum of 3 and 4? Answer: ",
          "Who is mentioned in the sentence?  ", "Topic: sports politics\n", "Sentiment: posi", ""]
CHOICES = [["positive", "negative", "neutral"], ["7", "seven", "4"], ["Alice", "the person is Alice", "no"],
           ["sports", "science business"], ["tive and the film was great", "tion of the actors"], ["yes", "no"]]


def flat(scores) -> list[float]:
    return [s.logprob for row in scores for s in row]


@pytest.fixture(scope="module")
def llama_tok():
    return make_tokenizer("llama_style", pad_is_eos=True)


@pytest.fixture(scope="module")
def llama(llama_tok):
    return make_llama(len(llama_tok))


@pytest.fixture(scope="module")
def chat_tok():
    return make_tokenizer("llama_style", chat=True)


@pytest.fixture(scope="module")
def chat_llama(chat_tok):
    return make_llama(len(chat_tok), seed=1)


def hflm_loglikelihood(model, tokenizer, contexts, choices, delimiter, max_length=512, batch_size=3):
    lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size, device="cpu",
              max_length=max_length)
    requests = [Instance("loglikelihood", {}, (x, delimiter + c), j)
                for x, row in zip(contexts, choices, strict=True) for j, c in enumerate(row)]
    return lm.loglikelihood(requests, disable_tqdm=True)


# --- (a) lm-eval parity ------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["llama_style", "gpt2_style"])
@pytest.mark.parametrize("delimiter", [" ", ""])
def test_lm_eval_convention_equals_installed_hflm_loglikelihood(style, delimiter):
    """Per-choice log-likelihoods and is_greedy equal lm-eval 0.4's HFLM(backend="causal") on the same
    requests, with a tokenizer that adds BOS (Llama) and one that adds nothing (GPT-2)."""
    tok = make_tokenizer(style)
    model = make_llama(len(tok)) if style == "llama_style" else make_gpt2(len(tok))
    inputs, choices = (INPUTS, CHOICES) if delimiter == "" else (INPUTS[:-2], CHOICES[:-2])
    ours = score_choices(model, tok, inputs, choices, batch_size=4, max_input_len=512, convention="lm-eval",
                         target_delimiter=delimiter)
    theirs = hflm_loglikelihood(model, tok, inputs, choices, delimiter)
    assert flat(ours) == pytest.approx([ll for ll, _ in theirs], abs=1e-4)
    assert [s.is_greedy for row in ours for s in row] == [g for _, g in theirs]
    if delimiter == "":  # the merged join: lm-eval scores whole[len(ctx):], shifted past "tive and"
        pairs = encode_requests(tok, inputs, choices, "lm-eval", "")
        assert tok.decode(pairs[4][0][1]) == " the film was great"


def test_lm_eval_convention_truncates_the_window_as_hflm(llama, llama_tok):
    """A window shorter than context + choice: cut from the left, last token dropped, as HFLM max_length."""
    ours = score_choices(llama, llama_tok, INPUTS[:4], CHOICES[:4], max_input_len=9, convention="lm-eval")
    theirs = hflm_loglikelihood(llama, llama_tok, INPUTS[:4], CHOICES[:4], " ", max_length=9)
    assert flat(ours) == pytest.approx([ll for ll, _ in theirs], abs=1e-4)
    untruncated = score_choices(llama, llama_tok, INPUTS[:4], CHOICES[:4], max_input_len=512, convention="lm-eval")
    assert flat(untruncated) != pytest.approx(flat(ours), abs=1e-3)


def test_lm_eval_convention_with_chat_template_scores_the_chat_prompt(chat_llama, chat_tok):
    """Under --chat-template the context is the chat prompt and the delimiter "" (lm-eval's
    apply_chat_template); HFLM on (chat prompt, choice) gives the same numbers."""
    ours = score_choices(chat_llama, chat_tok, INPUTS[:4], CHOICES[:4], max_input_len=512, convention="lm-eval",
                         target_delimiter=" ", chat_template=True)
    contexts = [chat_prompt(chat_tok, x) for x in INPUTS[:4]]
    theirs = hflm_loglikelihood(chat_llama, chat_tok, contexts, CHOICES[:4], "")
    assert flat(ours) == pytest.approx([ll for ll, _ in theirs], abs=1e-4)


def test_lm_eval_convention_refuses_a_choice_that_adds_no_token(llama, llama_tok):
    # "Sentiment: posi" + "tive" encodes to fewer tokens than the context alone: lm-eval asserts, t2t says so
    with pytest.raises(T2TError, match="adds no token"):
        score_choices(llama, llama_tok, ["Sentiment: posi"], [["tive"]], convention="lm-eval", target_delimiter="")
    with pytest.raises(T2TError, match="choice-scoring"):
        score_choices(llama, llama_tok, ["a"], [["b"]], convention="lm_eval")


# --- (b) fast path vs naive; t2t's convention is the training target ---------------------------------------


@pytest.mark.parametrize("convention", ["lm-eval", "t2t"])
def test_fast_path_equals_naive_and_batch_size_does_not_matter(llama, llama_tok, convention):
    inputs, choices = INPUTS[:-2], CHOICES[:-2]
    kw = {"convention": convention, "max_input_len": 64}
    naive = score_choices_naive(llama, llama_tok, inputs, choices, **kw)
    for batch_size in (1, 4, 64):
        fast = score_choices(llama, llama_tok, inputs, choices, batch_size=batch_size, **kw)
        assert flat(fast) == pytest.approx(flat(naive), abs=1e-4)
        assert [s.num_tokens for row in fast for s in row] == [s.num_tokens for row in naive for s in row]


class WithoutLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward has no ``logits_to_keep``: scored from its full logits instead."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def forward(self, input_ids, use_cache=False, labels=None):
        return self.model(input_ids=input_ids, use_cache=use_cache, labels=labels)


@pytest.mark.parametrize("arch", ["gemma2", "gpt2", "no_logits_to_keep"])
def test_lm_head_only_where_scored_equals_full_logits(arch, llama, llama_tok):
    """The head at the scored positions only (logits_to_keep; Gemma 2's final soft-capping applied after it)
    and the full-logits fallback score what the naive full forward scores."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    if arch == "gemma2":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = Gemma2ForCausalLM(Gemma2Config(
                vocab_size=len(llama_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=8, final_logit_softcapping=3.0,
                sliding_window=512, max_position_embeddings=512, attn_implementation="eager")).eval()
    elif arch == "gpt2":
        model = make_gpt2(len(llama_tok))
    else:
        model = WithoutLogitsToKeep(llama)
    kw = {"convention": "lm-eval", "max_input_len": 64}
    fast = score_choices(model, llama_tok, INPUTS[:4], CHOICES[:4], batch_size=3, **kw)
    naive = score_choices_naive(model, llama_tok, INPUTS[:4], CHOICES[:4], **kw)
    assert flat(fast) == pytest.approx(flat(naive), abs=1e-4)


def test_t2t_convention_scores_the_training_target_with_eos(llama, llama_tok):
    """t2t's choice is what tokenize_causal makes the target: the same prompt/target cut, delimiter and EOS
    (scored); with a merged join t2t falls back to the continuation encoded alone, lm-eval does not."""
    for delimiter in (" ", "\n", ""):
        pairs = encode_requests(llama_tok, INPUTS, CHOICES, "t2t", delimiter)
        for x, row, got in zip(INPUTS, CHOICES, pairs, strict=True):
            trained = tokenize_causal(llama_tok, [x] * len(row), row, 512, 512, target_delimiter=delimiter)
            for ex, (ctx, cont) in zip(trained, got, strict=True):
                assert ctx + cont == ex["input_ids"] and cont[-1] == llama_tok.eos_token_id
                assert ex["labels"][len(ctx):] == cont and set(ex["labels"][:len(ctx)]) == {-100}
    lm = encode_requests(llama_tok, INPUTS[:4], CHOICES[:4], "lm-eval", " ")
    t2t = encode_requests(llama_tok, INPUTS[:4], CHOICES[:4], "t2t", " ")
    assert [c + [llama_tok.eos_token_id] for row in lm for _, c in row] == [c for row in t2t for _, c in row]
    merged = encode_requests(llama_tok, ["Sentiment: posi"], [["tive and the film was great"]], "t2t", "")
    assert llama_tok.decode(merged[0][0][1], skip_special_tokens=True) == "tive and the film was great"


def test_t2t_convention_cuts_long_prompts_from_the_left_keeping_bos(llama, llama_tok):
    pairs = encode_requests(llama_tok, [INPUTS[0]], [["positive"]], "t2t", " ", max_input_len=5)
    ctx, cont = pairs[0][0]
    full = encode_requests(llama_tok, [INPUTS[0]], [["positive"]], "t2t", " ")[0][0][0]
    assert len(ctx) == 5 and ctx[0] == llama_tok.bos_token_id and ctx[1:] == full[-4:]
    assert cont[-1] == llama_tok.eos_token_id


def test_t2t_convention_with_chat_template_scores_the_assistant_turn(chat_llama, chat_tok):
    scores = score_choices(chat_llama, chat_tok, INPUTS[:4], CHOICES[:4], chat_template=True)
    naive = score_choices_naive(chat_llama, chat_tok, INPUTS[:4], CHOICES[:4], chat_template=True)
    assert flat(scores) == pytest.approx(flat(naive), abs=1e-4)
    (((ctx, cont),),) = encode_requests(chat_tok, ["Is it?"], [["yes"]], "t2t", chat_template=True)
    # as in training: the prompt up to the assistant turn, its trailing newline moved to the turn, which
    # ends with the template's <|im_end|> = EOS (not EOS twice) and newline
    assert chat_tok.decode(ctx) + "\n" == chat_prompt(chat_tok, "Is it?")
    assert chat_tok.decode(cont) == "\nyes<|im_end|>\n" and cont.count(chat_tok.eos_token_id) == 1


def test_predictions_and_is_greedy(llama, llama_tok):
    scores = score_choices(llama, llama_tok, INPUTS[:4], CHOICES[:4], convention="lm-eval")
    assert predict(scores, "sum") == [max(range(len(r)), key=lambda j: r[j].logprob) for r in scores]
    assert predict(scores, "chars") == [max(range(len(r)), key=lambda j: r[j].logprob / len(c[j]))
                                        for r, c in zip(scores, CHOICES[:4], strict=True)]
    # the greedy continuation (as token ids: decoding random tokens need not re-encode to them) is greedy
    context = prompt_ids(llama_tok, INPUTS[0])
    greedy = generate_ids(llama, llama_tok, [INPUTS[0]], 3, stop=())[0]
    other = greedy[:2] + [(greedy[2] + 1) % len(llama_tok)]
    (a, greedy_ok), (b, other_ok) = score_pairs(llama, [(context, greedy), (context, other)])
    assert greedy_ok and not other_ok and a > b


def test_peft_lora_on_a_causal_model(llama, llama_tok):
    import copy

    import peft

    config = peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=4, target_modules=["q_proj", "v_proj"],
                             init_lora_weights=False)
    torch.manual_seed(0)
    adapted = peft.get_peft_model(copy.deepcopy(llama), config)
    fast = score_choices(adapted, llama_tok, INPUTS[:4], CHOICES[:4], batch_size=3)
    naive = score_choices_naive(adapted, llama_tok, INPUTS[:4], CHOICES[:4])
    base = score_choices(llama, llama_tok, INPUTS[:4], CHOICES[:4], batch_size=3)
    assert flat(fast) == pytest.approx(flat(naive), abs=1e-4)
    assert flat(fast) != pytest.approx(flat(base), abs=1e-3)


# --- (c) generation ----------------------------------------------------------------------------------------

GEN_INPUTS = ["Review: the film was great fun. Sentiment:", "a", "Question: what is the sum of 3 and 4? Answer: ",
              "Who is mentioned in the sentence? The person is Alice. Options: yes no maybe", "Topic:"]


@pytest.mark.parametrize("chat", [False, True])
def test_batched_generation_equals_one_by_one(chat, llama, llama_tok, chat_llama, chat_tok):
    model, tok = (chat_llama, chat_tok) if chat else (llama, llama_tok)
    for stop in ((), DEFAULT_STOP, ("e",)):
        batched = generate(model, tok, GEN_INPUTS, 12, batch_size=5, chat_template=chat, stop=stop)
        alone = [generate(model, tok, [x], 12, batch_size=1, chat_template=chat, stop=stop)[0] for x in GEN_INPUTS]
        assert batched == alone
        ids = generate_ids(model, tok, GEN_INPUTS, 12, batch_size=2, chat_template=chat, stop=stop)
        assert ids == [generate_ids(model, tok, [x], 12, chat_template=chat, stop=stop)[0] for x in GEN_INPUTS]
        assert all(len(x) <= 12 for x in ids)


def test_generation_stops_at_a_stop_string_and_cuts_there(llama, llama_tok):
    free = generate_ids(llama, llama_tok, GEN_INPUTS, 16, stop=())
    texts = [llama_tok.decode(x, skip_special_tokens=True) for x in free]
    assert all(len(x) == 16 for x in free)  # a random model never writes EOS: the budget bounds it
    stop = "e"
    stopped_ids = generate_ids(llama, llama_tok, GEN_INPUTS, 16, stop=(stop,))
    stopped = generate(llama, llama_tok, GEN_INPUTS, 16, stop=(stop,))
    hit = 0
    for text, ids, full, out in zip(texts, stopped_ids, free, stopped, strict=True):
        assert ids == full[:len(ids)]  # the same greedy tokens, fewer of them
        if stop in text:
            hit += 1
            assert stop in llama_tok.decode(ids) and stop not in llama_tok.decode(ids[:-1])  # stopped at once
            assert out == text.split(stop)[0].strip()
        else:
            assert out == text.strip()
    assert hit >= 2


def test_generation_stops_at_eos_and_strips_the_prompt(llama, llama_tok):
    """Make the model's third greedy token the EOS of a copy of the tokenizer: generation ends there."""
    import copy

    free = generate_ids(llama, llama_tok, GEN_INPUTS[:1], 8, stop=())[0]
    tok = copy.deepcopy(llama_tok)
    tok.eos_token = tok.convert_ids_to_tokens(free[2])
    first = free.index(tok.eos_token_id)
    assert generate_ids(llama, tok, GEN_INPUTS[:1], 8, stop=())[0] == free[:first]
    prompt = prompt_ids(llama_tok, GEN_INPUTS[0])
    out = llama.generate(input_ids=torch.tensor([prompt]), max_new_tokens=8, do_sample=False,
                         pad_token_id=llama_tok.pad_token_id)
    assert out[0, len(prompt):].tolist() == free  # no prompt token in the output


def test_stop_criterion_reads_only_generated_tokens(llama_tok):
    prompt = llama_tok.encode("one\n\n")
    ids = torch.tensor([prompt + llama_tok.encode("two", add_special_tokens=False),
                        prompt + llama_tok.encode("x\n\n", add_special_tokens=False)])
    done = StopOnStrings(llama_tok, ["\n\n"], len(prompt))(ids, None)
    assert done.tolist() == [False, True]


def test_generation_prompt_is_the_training_context(llama_tok, chat_tok):
    # trailing whitespace is the delimiter's, the model writes it; BOS once; a chat prompt as training has it
    assert prompt_ids(llama_tok, "Answer: ") == llama_tok.encode("Answer:")
    assert prompt_ids(chat_tok, "Hi", chat_template=True) == chat_tok.encode(chat_prompt(chat_tok, "Hi").rstrip(),
                                                                              add_special_tokens=False)
    long = prompt_ids(llama_tok, INPUTS[0], max_input_len=4)
    assert len(long) == 4 and long[0] == llama_tok.bos_token_id


# --- (d) python -m t2t.evaluate end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def causal_run(tmp_path_factory):
    """A tiny Llama folder with a chat template, and a t2t.finetune run on it (2 LoRA steps) trained with
    --chat-template and --target-delimiter "\\n", holding out sentiment_product."""
    from t2t.training.config import build_config
    from t2t.training.recipe import train

    root = tmp_path_factory.mktemp("causal_eval")
    model_dir = save_model_folder(root / "llama", chat=True)
    (root / "mixtures").mkdir()
    (root / "mixtures" / "small.yaml").write_text(
        "include: {tasks: [sentiment_movie, topic_sentence]}\nheldout: {tasks: [sentiment_product]}\n")
    train(build_config({"model": str(model_dir), "mixture": "small", "mixture_dir": [str(root / "mixtures")],
                        "output_dir": str(root / "run"), "max_steps": 2, "batch_size": 4, "eval_steps": 0,
                        "save_steps": 0, "progress": False, "warmup_steps": 0, "max_input_len": 64,
                        "max_target_len": 8, "lr": 5e-2, "chat_template": True, "target_delimiter": "\n"}))
    return {"root": root, "model": str(model_dir), "adapter": root / "run" / "adapter"}


def _evaluate(tmp_path, *args: str) -> dict:
    from t2t.evaluate import main

    out = tmp_path / "eval"
    argv = ["--limit", "8", "--device", "cpu", "--no-progress", "--bootstrap", "0", "--log-samples",
            "--output-dir", str(out), *args]
    assert run_cli(main, argv) == 0
    return json.loads((out / "results.json").read_text())


def test_evaluate_a_causal_base_end_to_end_matches_hflm(causal_run, tmp_path):
    """--choice-scoring lm-eval: every logged sample's input is the context HFLM scores, and its logprobs are
    HFLM's on (input, " " + choice); generation tasks run with the causal path (prompt stripped)."""
    from t2t.modeling.loading import load_model, load_tokenizer

    saved = _evaluate(tmp_path, "--model", causal_run["model"], "--tasks", "compare_numbers,word_first",
                      "--choice-scoring", "lm-eval", "--max-input-len", "512")
    scoring = saved["config"]["choice_scoring"]
    assert scoring["family"] == "causal" and scoring["convention"] == "lm-eval"
    assert scoring["chat_template"] is False and scoring["target_delimiter"] == " "
    samples = [s for s in saved["samples"] if "logprobs" in s]
    assert len(samples) >= 8 and all(len(s["is_greedy"]) == len(s["choices"]) for s in samples)
    tok, model = load_tokenizer(causal_run["model"]), load_model(causal_run["model"], "sdpa")
    theirs = hflm_loglikelihood(model, tok, [s["input"] for s in samples], [s["choices"] for s in samples], " ")
    assert [x for s in samples for x in s["logprobs"]] == pytest.approx([ll for ll, _ in theirs], abs=1e-4)
    generated = [s for s in saved["samples"] if s["task"] == "word_first"]
    assert generated and all(isinstance(s["prediction"], str) for s in generated)
    assert all(s["input"] not in s["prediction"] or not s["prediction"] for s in generated)


def test_evaluate_a_causal_adapter_takes_the_runs_chat_template_and_delimiter(causal_run, tmp_path):
    """A causal finetune run evaluated on its held-out task with its own --chat-template and delimiter."""
    saved = _evaluate(tmp_path, "--adapter", str(causal_run["adapter"]))
    assert set(saved["config"]["tasks"]) == {"sentiment_product"}
    assert saved["config"]["resolved"]["scoring"]["chat_template"] is True
    assert saved["config"]["resolved"]["scoring"]["target_delimiter"] == "\n"
    scoring = saved["config"]["choice_scoring"]
    assert scoring["chat_template"] is True and scoring["convention"] == "t2t" and scoring["eos"] is True
    by_model: dict[str, list] = {}
    for s in saved["samples"]:
        assert s["input"].startswith("<|im_start|>user\n") and s["input"].endswith("<|im_start|>assistant\n")
        by_model.setdefault(s["model"], []).extend(s["logprobs"])
    assert set(by_model) == {causal_run["model"], "run"}
    assert by_model["run"] != pytest.approx(by_model[causal_run["model"]], abs=1e-3)  # the adapter was applied
    # the user's options win over the run's
    saved = _evaluate(tmp_path / "2", "--adapter", str(causal_run["adapter"]), "--chat-template", "false",
                      "--target-delimiter", " ")
    assert saved["config"]["choice_scoring"]["chat_template"] is False
    assert not saved["samples"][0]["input"].startswith("<|im_start|>")


def test_seq2seq_models_refuse_causal_only_options(capsys):
    from t2t.evaluate import main

    assert run_cli(main, ["--tasks", "compare_numbers", "--chat-template", "--limit", "2"]) == 2  # bare: true
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --chat-template is for causal")
    assert run_cli(main, ["--tasks", "compare_numbers", "--target-delimiter", "\n", "--limit", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --target-delimiter '\\n' is used")


def test_run_defaults_come_from_causal_runs_only(tmp_path):
    """A causal run's --chat-template / --target-delimiter become evaluate's defaults; a seq2seq run records them
    too (unused there), so its values are not taken; options given win."""
    from t2t.evaluation.adapter_runs import AdapterRun
    from t2t.evaluation.config import build_config
    from t2t.evaluation.selection import resolve_from_runs

    def run(family: str) -> AdapterRun:
        config = {"model": {"model": "m"}, "model_family": family,
                  "data": {"chat_template": True, "target_delimiter": "\n"}}
        return AdapterRun("r", tmp_path / "adapter", {"tasks": []}, config)

    cfg = build_config({"tasks": ["compare_numbers"], "output_dir": str(tmp_path / "eval")})
    causal = resolve_from_runs(cfg, [run("causal")]).scoring
    assert (causal.chat_template, causal.target_delimiter) == (True, "\n")
    seq2seq = resolve_from_runs(cfg, [run("seq2seq")]).scoring
    assert (seq2seq.chat_template, seq2seq.target_delimiter) == (None, None)
    given = resolve_from_runs(cfg.override(chat_template=False, target_delimiter=" "), [run("causal")]).scoring
    assert (given.chat_template, given.target_delimiter) == (False, " ")
