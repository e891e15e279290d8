"""Chain of thought (issue #26): the answer-extraction rule and cot_exact_match on constructed texts (exact
counts), the CoT task files reading back their own answers, the CoT template variants in the stream and their
rule for tasks without rationales, and ``python -m t2t.evaluate --cot`` on t2t-tiny with constructed outputs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from t2t.errors import T2TError
from t2t.evaluation import scoring
from t2t.evaluation.config import build_config
from t2t.evaluation.metrics import compute, example_scores, normalize_sni
from t2t.evaluation.prompts import build_prompts
from t2t.evaluation.runner import evaluate
from t2t.mixtures.resolve import load_mixture
from t2t.mixtures.spec import COT_VARIANTS, MixtureSpec
from t2t.mixtures.stream import ExampleStream
from t2t.tasks.cot import ZERO_SHOT_TRIGGER, extract_answer, is_cot_task
from t2t.tasks.fewshot import FEW_SHOT_SEP
from t2t.tasks.registry import TaskRegistry

# (generated text, reference, does the extracted answer match)
CASES = [
    ("Natalia sold 24 clips in May. So the answer is 72.", "72", True),
    ("48 + 24 = 72.\nThe answer: 72.", "72", True),
    ("Step one. Final answer: (C).", "C", True),  # punctuation and case normalised away
    ("Worked out.\n#### 1,000", "1000", True),  # GSM8K's marker; SNI drops the comma
    ("The answer is 3. Checking again, the answer is 4.", "4", True),  # the last marker wins
    ("So the final answer is yes.\nExtra line after.", "yes", True),  # first line only
    ("no", "no", True),  # no marker: the whole text
    ("The answer is 7.", "72", False),
    ("I think it is 72 but the answer is 27.", "72", False),  # the marker decides, not a number in the reasoning
    ("The answer is:", "yes", False),  # an empty answer matches nothing
]


def test_extraction_rule_and_cot_exact_match_on_constructed_texts() -> None:
    assert [extract_answer(t) for t, _, _ in CASES[:7]] == ["72", "72", "(C)", "1,000", "4", "yes", "no"]
    preds, refs = [t for t, _, _ in CASES], [[r] for _, r, _ in CASES]
    assert example_scores("cot_exact_match", preds, refs) == [100.0 * ok for _, _, ok in CASES]
    assert compute("cot_exact_match", preds, refs) == pytest.approx(100.0 * 7 / 10)
    # max over references; exact_match on the whole text would score none of the reasoned ones
    assert compute("cot_exact_match", ["So the answer is (D)."], [["D", "sex"]]) == 100.0
    assert compute("exact_match", preds[:6], refs[:6]) == 0.0


@pytest.fixture(scope="module")
def registry() -> TaskRegistry:
    return TaskRegistry.load()


def test_cot_tasks_read_back_their_own_answers(registry: TaskRegistry) -> None:
    cot = [t for t in registry if is_cot_task(t.tags)]
    assert {t.name for t in cot} >= {"cot_gsm8k", "cot_aqua_rat", "cot_qasc", "cot_strategyqa", "cot_ecqa"}
    for task in cot:
        assert task.metrics == ("cot_exact_match",) and not task.has_choices, task.name
        assert "hub" not in task.tags, f"{task.name}: the hub mixtures (flan2021, t0_train) must not select it"
        scored = task.scored_templates()
        assert len(scored) >= 4 and len(task.templates) - len(scored) >= 1, task.name
        for i, row in enumerate(task.example_rows):
            for name in scored:
                ex = task.render(row, i, name)
                assert ex is not None and ex.target.count("\n") < 20, (task.name, name)
                answer = normalize_sni(extract_answer(ex.target))
                # the rationale comes first and is not just the answer; the rule finds the answer after it
                assert answer and len(ex.target) > 3 * len(answer), (task.name, name, ex.target)
                assert answer in {normalize_sni(r) for r in ex.references}, (task.name, name, ex.target)
    gsm = registry.get("cot_gsm8k").render(registry.get("cot_gsm8k").example_rows[0], 0, "think_first")
    assert "<<" not in gsm.target and "####" not in gsm.target and gsm.references == ("72",)


TASK = """---
cluster: {cluster}
tags: {tags}
source: {{files: {{train: data/{name}.jsonl}}}}
answer: "{{{{ a }}}}"
---
{{% block {name}_t %}}
{name}: {{{{ q }}}}
|||
{target}
{{% endblock %}}
"""


@pytest.fixture
def suite(tmp_path: Path) -> tuple[Path, Path]:
    tasks, mixtures = tmp_path / "tasks", tmp_path / "mixtures"
    (tasks / "data").mkdir(parents=True)
    mixtures.mkdir()
    for name, tags, target in (("reason", "[cot]", "because {{ q }} is {{ a }}. So the answer is {{ a }}."),
                               ("plain", "[]", "{{ a }}")):
        (tasks / f"{name}.jinja").write_text(TASK.format(cluster=name, tags=tags, name=name, target=target))
        rows = [{"q": f"{name}{i}", "a": f"ans{i}"} for i in range(40)]
        (tasks / "data" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tasks, mixtures


def _mixture(suite: tuple[Path, Path], variants: str):
    tasks, mixtures = suite
    (mixtures / "m.yaml").write_text(f"include: {{clusters: [reason, plain]}}\nrate: {{strategy: equal}}\n"
                                     f"templates: {{variants: {variants}, few_shot_k: 2}}\n")
    return load_mixture("m", task_dirs=[tasks], mixture_dirs=[mixtures], include_builtin=False)


def test_cot_variants_apply_to_cot_tasks_and_are_skipped_by_the_others(suite: tuple[Path, Path]) -> None:
    mixture = _mixture(suite, "{zero_shot: 0.5, zero_shot_cot: 0.25, few_shot_cot: 0.25}")
    policy = {e.name: dict(e.policy.variants) for e in mixture.entries}
    assert policy["reason"] == {"zero_shot": 0.5, "zero_shot_cot": 0.25, "few_shot_cot": 0.25}
    assert policy["plain"] == {"zero_shot": 1.0}  # the CoT shares dropped, the rest renormalised
    draws = ExampleStream(mixture, seed=3).draws(0, 400)
    seen = Counter((d.task, d.variant) for d in draws)
    assert {v for t, v in seen if t == "plain"} == {"zero_shot"}
    assert {v for t, v in seen if t == "reason"} == {"zero_shot", "zero_shot_cot", "few_shot_cot"}
    for d in draws:
        if d.variant == "few_shot_cot":  # two exemplars, each with its rationale, then the query
            parts = d.example.input.split(FEW_SHOT_SEP)
            assert len(parts) == 3 and all("because" in p and "So the answer is" in p for p in parts[:2])
            assert parts[2] == f"reason: reason{d.row}" and d.example.target.startswith(f"because reason{d.row}")
        elif d.variant == "zero_shot_cot":
            assert d.example.input == f"reason: reason{d.row}" and "So the answer is" in d.example.target


def test_only_cot_variants_refuse_a_task_without_rationales(suite: tuple[Path, Path]) -> None:
    with pytest.raises(T2TError, match=r"field 'templates.variants': task 'plain' .* has no rationale"):
        _mixture(suite, "{zero_shot_cot: 0.5, few_shot_cot: 0.5}")
    spec = MixtureSpec.from_dict({"include": {"tags": ["cot"]}, "templates": {"variants": {"few_shot_cot": 1}}}, "x")
    assert set(spec.templates.variants) <= set(COT_VARIANTS)
    with pytest.raises(T2TError, match="'few_shot_cots' is not one of"):
        MixtureSpec.from_dict({"include": {"tags": ["cot"]}, "templates": {"variants": {"few_shot_cots": 1}}}, "x")


YESNO = """---
cluster: nli_t
source: {files: {train: yn.jsonl, validation: yn.jsonl}}
choices: ["yes", "no"]
answer: "{{ choices[label] }}"
---
{% block is_it %}
Is {{ x }} small? {{ options }}
|||
{{ answer }}
{% endblock %}
"""


def test_evaluate_cot_prompts_generates_and_scores_the_extracted_answer(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A choices task under --cot: the trigger after each input, generated with the CoT budget, scored by
    cot_exact_match on constructed outputs (6 of 8 right); --cot --num-shots is refused for it."""
    rows = [{"x": f"thing{i}", "label": i % 2} for i in range(8)]
    (tmp_path / "yn.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "yesno.jinja").write_text(YESNO)
    task = TaskRegistry.load([tmp_path], include_builtin=False).get("yesno")
    budgets = []

    def fake_generate(model, tokenizer, inputs, max_new_tokens, num_beams, **kw):
        budgets.append(max_new_tokens)
        out = []
        for text in inputs:
            assert text.endswith("\n" + ZERO_SHOT_TRIGGER)
            i = int(text.split("thing")[1].split(" ")[0])
            right = ("yes", "no")[i % 2]
            out.append(f"Thing{i} is what it is. So the answer is {right if i not in (2, 5) else 'maybe'}.")
        return out

    monkeypatch.setattr(scoring, "generate", fake_generate)
    # t2t-tiny, built once and cached for the whole suite; its outputs are replaced by constructed ones
    config = build_config({"model": "t2t-tiny", "device": "cpu", "progress": False, "cot": True, "bootstrap": 0})
    result = evaluate(config, [task], {})
    assert budgets == [128] and result.tasks["yesno"]["kind"] == "generation" and result.settings["cot"] is True
    scores = {(s.metric, s.template): s.value for s in result.report.scores}
    assert scores == {("cot_exact_match", "is_it"): pytest.approx(100.0 * 6 / 8)}
    assert "Chain of thought (--cot)" in result.markdown()
    with pytest.raises(T2TError, match="--cot --num-shots 2: task 'yesno' has no rationales"):
        build_prompts(task, rows, "validation", "is_it", num_shots=2, cot=True)
