"""``python -m t2t.predict``: a base, an adapter or a t2t run on new inputs, for both model families.

The expected predictions come from loading the model and the adapter here (transformers + peft directly)
and calling evaluation's scoring functions: what is checked is the command's plumbing (which model and
adapter, which prompt format from the run, which inputs in which order, the JSONL out), since the scoring
itself is tested in tests/evaluation.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from t2t.errors import run_cli
from t2t.predict.cli import main
from t2t.tasks.registry import TaskRegistry
from tests.causal_tiny import save_model_folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """t2t-tiny and a tiny chat Llama, each with a random LoRA adapter in a folder laid out as t2t.finetune
    writes a run (adapter/, config.json, manifest.json); the causal run trained with --chat-template and
    --target-delimiter "\\n"."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from t2t.modeling.loading import resolve_model

    root = tmp_path_factory.mktemp("predict")
    tiny = Path(resolve_model("t2t-tiny"))  # the path, so that each command does not hash the recipe again
    llama = save_model_folder(root / "llama", chat=True)
    out: dict[str, Path] = {"tiny": tiny, "llama": llama, "root": root}
    for name, base, auto, task_type, targets, data in (
            ("seq2seq", tiny, AutoModelForSeq2SeqLM, peft.TaskType.SEQ_2_SEQ_LM, ["q", "v"], {}),
            ("causal", llama, AutoModelForCausalLM, peft.TaskType.CAUSAL_LM, ["q_proj", "v_proj"],
             {"chat_template": True, "target_delimiter": "\n"})):
        run = root / f"run-{name}"
        torch.manual_seed(0)
        config = peft.LoraConfig(task_type=task_type, r=4, lora_alpha=8, target_modules=targets,
                                 init_lora_weights=False)  # random: the adapter changes every score
        peft.get_peft_model(auto.from_pretrained(base), config).save_pretrained(run / "adapter")
        (run / "config.json").write_text(json.dumps({"model": {"model": str(base)}, "model_family": name,
                                                     "data": data}))
        (run / "manifest.json").write_text(json.dumps({"mixture": "offline", "tasks": [], "heldout": {}}))
        out[name] = run
    return out


def _predict(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    capsys.readouterr()
    code = run_cli(main, ["--device", "cpu", *argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return [json.loads(line) for line in captured.out.splitlines()]


def _expected(model_dir: Path, adapter: Path | None, inputs: list[str], choices: list[list[str]] | None = None,
              **opts) -> list:
    """Generated texts, or choice scores, of the model loaded here with evaluation's scoring functions."""
    from peft import PeftModel

    from t2t.evaluation import scoring
    from t2t.modeling.loading import load_model, load_tokenizer

    model = load_model(str(model_dir))
    model = PeftModel.from_pretrained(model, str(adapter)) if adapter else model
    tok = load_tokenizer(str(model_dir))
    if choices is None:
        return scoring.generate(model, tok, inputs, opts.pop("max_new_tokens"), **opts)
    return scoring.score_choices(model, tok, inputs, choices, **opts)


def test_seq2seq_run_folder_generates_and_ranks_in_input_order(runs, capsys, tmp_path):
    """--adapter RUN (the run folder) loads RUN/adapter on the run's base; texts and JSONL rows keep their order;
    rows with choices are ranked (t2t's and lm-eval's conventions), the others generate."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"input": "Is this review positive? great fun", "choices": ["yes", "no"]}) + "\n\n"
                    + json.dumps({"input": "What is 3 plus 4?"}) + "\n")
    out = _predict(capsys, "--adapter", str(runs["seq2seq"]), "--input", "12 + 7 =", "--input-file", str(rows),
                   "--max-new-tokens", "6")
    assert [o["input"] for o in out] == ["12 + 7 =", "Is this review positive? great fun", "What is 3 plus 4?"]
    adapter = runs["seq2seq"] / "adapter"
    texts = _expected(runs["tiny"], adapter, ["12 + 7 =", "What is 3 plus 4?"], max_new_tokens=6)
    assert [out[0]["prediction"], out[2]["prediction"]] == texts
    assert "choices" not in out[0] and out[1]["choices"] == ["yes", "no"]
    for convention, delimiter in (("t2t", " "), ("lm-eval", " ")):
        if convention == "lm-eval":
            out = _predict(capsys, "--adapter", str(runs["seq2seq"]), "--input-file", str(rows),
                           "--choice-scoring", "lm-eval")
        ranked = next(o for o in out if "choices" in o)
        scores = _expected(runs["tiny"], adapter, [ranked["input"]], [["yes", "no"]], convention=convention,
                           target_delimiter=delimiter)[0]
        assert ranked["logprobs"] == pytest.approx([s.logprob for s in scores], abs=1e-4)
        assert ranked["prediction"] == ["yes", "no"][max((0, 1), key=lambda j: scores[j].logprob)]
    base = _expected(runs["tiny"], None, [ranked["input"]], [["yes", "no"]], convention="lm-eval")[0]
    assert ranked["logprobs"] != pytest.approx([s.logprob for s in base], abs=1e-4)  # the adapter was applied


def test_causal_run_takes_its_chat_template_and_delimiter(runs, capsys):
    """A decoder-only run: the run's --chat-template and --target-delimiter are the defaults (generation with
    left padding and stop strings, choices scored on the assistant turn), and --no-chat-template overrides."""
    out = _predict(capsys, "--adapter", str(runs["causal"] / "adapter"), "--input", "Review: great fun.",
                   "--input", "Question: what is 3 and 4?", "--choices", "positive|||negative", "--batch-size", "1")
    inputs = ["Review: great fun.", "Question: what is 3 and 4?"]
    adapter = runs["causal"] / "adapter"
    scores = _expected(runs["llama"], adapter, inputs, [["positive", "negative"]] * 2, chat_template=True,
                       target_delimiter="\n")
    assert [x for o in out for x in o["logprobs"]] == pytest.approx([s.logprob for row in scores for s in row],
                                                                    abs=1e-4)
    assert all(len(o["is_greedy"]) == 2 for o in out)
    plain = _predict(capsys, "--adapter", str(runs["causal"]), "--input", inputs[0], "--choices",
                     "positive|||negative", "--no-chat-template")
    assert plain[0]["logprobs"] != pytest.approx(out[0]["logprobs"], abs=1e-4)
    generated = _predict(capsys, "--adapter", str(runs["causal"]), "--input", inputs[0], "--input", inputs[1],
                         "--max-new-tokens", "5")
    texts = _expected(runs["llama"], adapter, inputs, max_new_tokens=5, chat_template=True)
    assert [g["prediction"] for g in generated] == texts


def test_a_full_model_run_folder_is_loaded_with_its_prompt_format(runs, capsys):
    """--model RUN of a --method full run loads RUN/model, with the run's chat template and delimiter."""
    import shutil

    run = runs["root"] / "run-full"
    shutil.copytree(runs["llama"], run / "model")
    for name in ("config.json", "manifest.json"):
        shutil.copy2(runs["causal"] / name, run / name)
    out = _predict(capsys, "--model", str(run), "--input", "Review: great fun.", "--choices", "positive|||negative")
    scores = _expected(runs["llama"], None, ["Review: great fun."], [["positive", "negative"]], chat_template=True,
                       target_delimiter="\n")
    assert out[0]["logprobs"] == pytest.approx([s.logprob for s in scores[0]], abs=1e-4)


def test_task_rows_render_through_the_template(runs, capsys):
    """--task renders each row as training does; a row without its answer is rendered with the example's
    fields filled in (no target reported), a whole row reports its target; --template picks another."""
    task = TaskRegistry.load().get("sentiment_movie")
    review = "the plot felt tedious. a waste of two hours"
    out = _predict(capsys, "--model", str(runs["tiny"]), "--task", "sentiment_movie",
                   "--input", json.dumps({"text": review}), "--input", json.dumps({"text": review, "label": 1}))
    expected = task.render({"text": review, "label": 0}, 0, "review_polarity")
    assert [o["input"] for o in out] == [expected.input] * 2
    assert "target" not in out[0] and out[1]["target"] == "negative"
    assert out[0]["choices"] == ["positive", "negative"] and out[0]["prediction"] in out[0]["choices"]
    other = _predict(capsys, "--model", str(runs["tiny"]), "--task", "sentiment_movie", "--template",
                     "sentiment_of", "--input", json.dumps({"text": review}))
    assert other[0]["input"] == task.render({"text": review, "label": 0}, 0, "sentiment_of").input
    generated = _predict(capsys, "--model", str(runs["tiny"]), "--task", "arith_sum", "--input",
                         json.dumps({"a": 2, "b": 3}), "--max-new-tokens", "3")
    assert generated[0]["input"] == "2 + 3 =" and "choices" not in generated[0]


def test_stdin_output_file_and_config_round_trip(runs, capsys, monkeypatch, tmp_path):
    """Piped text is one input per line; --output is written whole and kept unless --overwrite; the options
    saved with --save-config give the same predictions through --config."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("1 + 2 =\n\n4 + 4 =\n"))
    first = tmp_path / "first.jsonl"
    saved = tmp_path / "options.yaml"
    assert run_cli(main, ["--model", str(runs["tiny"]), "--device", "cpu", "--num-beams", "2", "--max-new-tokens",
                          "4", "--output", str(first), "--save-config", str(saved)]) == 0
    lines = [json.loads(line) for line in first.read_text().splitlines()]
    assert [o["input"] for o in lines] == ["1 + 2 =", "4 + 4 ="]
    assert lines[0]["prediction"] == _expected(runs["tiny"], None, ["1 + 2 ="], max_new_tokens=4, num_beams=2)[0]
    again = tmp_path / "again.jsonl"
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"input": "1 + 2 ="}\n{"input": "4 + 4 ="}\n'))
    assert run_cli(main, ["--config", str(saved), "--input-file", "-", "--output", str(again)]) == 0
    assert again.read_text() == first.read_text()
    capsys.readouterr()
    assert run_cli(main, ["--config", str(saved), "--input", "x", "--output", str(first)]) == 2
    assert "--overwrite" in capsys.readouterr().err and first.read_text() == again.read_text()


def test_sampling_is_seeded_with_transformers_semantics_and_n_outputs(runs, capsys):
    """--do-sample with --seed: the same command twice writes the same lines (the seed in each), another seed
    draws other tokens; the options reach generate() with GenerationConfig's meaning (one input: the same
    draws as model.generate seeded alike); --num-return-sequences N gives N outputs, the first as prediction."""
    import torch

    from t2t.modeling.loading import load_model, load_tokenizer

    argv = ["--model", str(runs["tiny"]), "--input", "What is 3 plus 4?", "--input", "12 + 7 =", "--do-sample",
            "--temperature", "1.5", "--top-k", "0", "--top-p", "0.95", "--num-return-sequences", "3",
            "--max-new-tokens", "6"]
    first, again = _predict(capsys, *argv), _predict(capsys, *argv)
    assert first == again
    assert all(o["seed"] == 0 and len(o["predictions"]) == 3 and o["prediction"] == o["predictions"][0]
               for o in first)
    assert len({text for o in first for text in o["predictions"]}) > 1  # sampled, not six greedy copies
    other = _predict(capsys, *argv, "--seed", "1")
    assert [o["predictions"] for o in other] != [o["predictions"] for o in first] and other[0]["seed"] == 1
    alone = _predict(capsys, *argv[:4], *argv[6:])  # the first input alone, batch of one: no padding
    model, tok = load_model(str(runs["tiny"])).eval(), load_tokenizer(str(runs["tiny"]))
    torch.manual_seed(0)
    ids = model.generate(**tok(["What is 3 plus 4?"], return_tensors="pt"), do_sample=True, temperature=1.5,
                         top_k=0, top_p=0.95, num_return_sequences=3, max_new_tokens=6)
    assert alone[0]["predictions"] == [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
    causal = ["--adapter", str(runs["causal"]), "--input", "Review: great fun.", "--input", "Question: 3 and 4?",
              "--do-sample", "--repetition-penalty", "1.3", "--max-new-tokens", "6", "--seed", "7"]
    sampled = _predict(capsys, *causal)
    assert sampled == _predict(capsys, *causal) and sampled[0]["seed"] == 7 and "predictions" not in sampled[0]


@pytest.mark.parametrize("family", ["seq2seq", "causal"])
def test_stop_strings_cut_as_evaluation_batched_as_one_by_one(runs, capsys, family):
    """--stop: generation ends at the first stop string, left out of the output: the unstopped text cut there,
    the same batched as one input at a time, and evaluation's generate with that stop gives it too."""
    inputs = ["Review: great fun.", "Question: what is 3 and 4?", "12 + 7 ="]
    # t2t-tiny alone writes nothing greedily (EOS first): a repetition penalty makes it write (and is tested)
    model = ["--model", str(runs["tiny"]), "--repetition-penalty", "3"] if family == "seq2seq" else \
        ["--adapter", str(runs["causal"])]
    argv = [*model, *[a for text in inputs for a in ("--input", text)], "--max-new-tokens", "12"]
    full = [o["prediction"] for o in _predict(capsys, *argv, "--stop", "")]  # '': EOS only, no default
    text = max(full, key=len)
    stop = text[len(text) // 2:len(text) // 2 + 2]  # from the middle of the longest output: cuts something
    assert stop.strip() and len(text) > 4, full
    # the option's escapes: a comma separates list items and surrounding whitespace is dropped, so both go as \\u
    escaped = "".join(f"\\u{ord(c):04x}" if c.isspace() or c in ",\\" else c for c in stop)
    batched = [o["prediction"] for o in _predict(capsys, *argv, "--stop", escaped, "--stop", "never seen")]
    alone = [o["prediction"] for o in _predict(capsys, *argv, "--stop", escaped, "--batch-size", "1")]
    assert batched == alone == [t.split(stop)[0].strip() for t in full]
    assert batched != full
    if family == "seq2seq":
        expected = _expected(runs["tiny"], None, inputs, max_new_tokens=12, stop=[stop],
                             sampling={"repetition_penalty": 3.0})
    else:
        expected = _expected(runs["llama"], runs["causal"] / "adapter", inputs, max_new_tokens=12, stop=[stop],
                             chat_template=True)
    assert expected == batched


@pytest.mark.parametrize(("args", "message"), [
    (["--task", "nope", "--input", "x"], "unknown task 'nope'"),
    (["--input-file", "ROWS"], "ROWS:1: no 'input' text in ['text']"),
    (["--task", "sentiment_movie", "--input", '{"label": 1}'], "reads field(s) text to build its input"),
    (["--task", "arith_sum", "--input", '{"a": 1}'], "template 'equals' reads field(s) b to build its input"),
    (["--task", "sentiment_movie", "--input", "plain text"], "is a JSON object of the task's fields"),
    (["--task", "sentiment_movie", "--template", "nope", "--input", '{"text": "a"}'], "no such template"),
    (["--template", "x", "--input", "a"], "--template x needs --task"),
    (["--choices", "|||", "--input", "a"], "give at least one choice"),
    (["--input-file", "missing.jsonl"], "no such file"),
    ([], "no input: give --input TEXT"),
    (["--adapter", "CAUSAL", "--input", "a"], "is a causal adapter (task_type CAUSAL_LM) but --model"),
    (["--do-sample", "--temperature", "0", "--input", "a"], "--temperature 0.0: must be above 0"),
    (["--temperature", "0.7", "--input", "a"], "--temperature 0.7 applies only to sampling; add --do-sample"),
    (["--do-sample", "--top-p", "1.5", "--input", "a"], "--top-p 1.5: must be above 0 and at most 1"),
    (["--num-return-sequences", "3", "--input", "a"], "--num-return-sequences 3 is above --num-beams 1"),
    (["--do-sample", "--num-beams", "2", "--num-return-sequences", "3", "--input", "a"], "above --num-beams 2"),
    (["--do-sample", "--choices", "yes|||no", "--input", "a"], "--do-sample with --choices"),
    (["--do-sample", "--task", "sentiment_movie", "--input", '{"text": "a"}'],
     "--input 1: has answer choices, which are ranked by log-likelihood, never sampled"),
])
def test_user_errors_are_one_line_exit_2(runs, capsys, monkeypatch, tmp_path, args, message):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "no input field"}) + "\n")
    args = [str(rows) if a == "ROWS" else str(runs["causal"]) if a == "CAUSAL" else a for a in args]
    message = message.replace("ROWS", str(rows))
    capsys.readouterr()
    assert run_cli(main, ["--model", str(runs["tiny"]), "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err
