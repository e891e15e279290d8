"""python -m t2t.tasks import: promptsource templates.yaml -> a t2t task file that loads and renders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from t2t.errors import T2TError
from t2t.tasks.cli import main
from t2t.tasks.importers.promptsource import import_collection, import_file
from t2t.tasks.registry import TaskRegistry

# The current promptsource format (answer_choices as a Jinja string, original_task) with an older-format
# template (answer_choices as a list, task_template) mixed in, as real collections have them.
COLLECTION = """\
dataset: super_glue
subset: rte
templates:
  2721e378-68b2-40e6-be7e-fc2783b16042: !Template
    answer_choices: True ||| False
    id: 2721e378-68b2-40e6-be7e-fc2783b16042
    jinja: '{{premise}}

      Question: {{hypothesis}} True or False? ||| {{ answer_choices[label] }}'
    metadata: !TemplateMetadata
      choices_in_prompt: true
      languages: [en]
      metrics: [Accuracy]
      original_task: true
    name: GPT-3 style
    reference: ''
  4aac6388-3e90-4d06-be90-68fc31a89fa4: !Template
    answer_choices: Yes ||| No
    id: 4aac6388-3e90-4d06-be90-68fc31a89fa4
    jinja: '{{premise}} Does the passage support "{{hypothesis}}"? ||| {{ answer_choices[label] }}'
    metadata: !TemplateMetadata
      metrics: [Accuracy]
      original_task: true
    name: "GPT-3 style!"
    reference: ''
  ad3361d7-505f-4b5d-93dd-e426394a3943: !Template
    answer_choices: [ 'Yes', 'No' ]
    id: ad3361d7-505f-4b5d-93dd-e426394a3943
    jinja: '{{premise}} Is it true that {{hypothesis}}? Hint: {{ answer_choices | choice }} |||
      {{ answer_choices[label] }}'
    metadata: !TemplateMetadata
      task_template: true
    name: 1 based on the passage
    reference: ''
  9e2b4267-ec23-44c8-b82a-107e2c890fec: !Template
    answer_choices: null
    id: 9e2b4267-ec23-44c8-b82a-107e2c890fec
    jinja: '{% if label == 0 %}Write a sentence that follows from: {{premise}} ||| {{hypothesis}}{% endif %}'
    metadata: !TemplateMetadata
      metrics: [BLEU]
      original_task: false
    name: generate entailed hypothesis
    reference: ''
"""
ROWS = [{"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": 0},
        {"premise": "It rains.", "hypothesis": "The sun shines.", "label": 1}]


@pytest.fixture()
def collection(tmp_path: Path) -> Path:
    path = tmp_path / "templates.yaml"
    path.write_text(COLLECTION, encoding="utf-8")
    return path


def test_import_keeps_every_template_its_choices_and_its_role(collection: Path, tmp_path: Path) -> None:
    out = import_file(collection, tmp_path / "tasks", "nli", examples=ROWS)
    assert out == tmp_path / "tasks" / "super_glue_rte.jinja"
    task = TaskRegistry.load([tmp_path / "tasks"], include_builtin=False).get("super_glue_rte")
    assert task.cluster == "nli" and task.source == {"hf": "super_glue", "config": "rte"}
    assert task.source_id == "hf:super_glue/rte" and task.metrics == ("accuracy",)
    # Unique identifiers for names that collide or start with a digit; the original name and id kept.
    assert task.template_names == ["gpt_3_style", "gpt_3_style_2", "t_1_based_on_the_passage",
                                   "generate_entailed_hypothesis"]
    assert "GPT-3 style! (promptsource 4aac6388" in task.templates["gpt_3_style_2"].description
    # Most scored templates answer Yes/No: that is the task's; True/False is the first template's own.
    assert task.fixed_choices() == ("Yes", "No") and task.fixed_choices("gpt_3_style") == ("True", "False")
    assert task.scored_templates() == ["gpt_3_style", "gpt_3_style_2", "t_1_based_on_the_passage"]
    ex = task.render(ROWS[1], 1, "gpt_3_style")
    assert ex.input == "It rains.\nQuestion: The sun shines. True or False?" and ex.target == "False"
    assert ex.choices == ("True", "False")
    assert task.render(ROWS[0], 0, "gpt_3_style_2").target == "Yes"
    # promptsource's `| choice` filter became t2t's seeded choice(): same seed, same text.
    hinted = {task.render(ROWS[0], 0, "t_1_based_on_the_passage", seed=s).input for s in range(20)}
    assert {h.rsplit("Hint: ", 1)[1] for h in hinted} == {"Yes", "No"}
    assert task.render(ROWS[0], 0, "t_1_based_on_the_passage", seed=3) == task.render(
        ROWS[0], 0, "t_1_based_on_the_passage", seed=3)
    # original_task: false -> inverted (trained, never scored); it declines non-entailed rows.
    assert task.templates["generate_entailed_hypothesis"].inverted
    assert task.render(ROWS[0], 0, "generate_entailed_hypothesis").target == "An animal moves."
    assert task.render(ROWS[1], 1, "generate_entailed_hypothesis") is None


def test_import_refuses_to_clobber_and_leaves_nothing_broken(collection: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tasks"
    import_file(collection, out_dir, "nli")
    before = (out_dir / "super_glue_rte.jinja").read_text()
    with pytest.raises(T2TError, match="already exists; pass --overwrite"):
        import_file(collection, out_dir, "nli")
    # A row the templates cannot render (no 'hypothesis'): the import fails naming the template and field,
    # and the earlier file is untouched, with no scratch files left in the task folder.
    with pytest.raises(T2TError, match="does not load.*template 'gpt_3_style'.*hypothesis"):
        import_file(collection, out_dir, "nli", overwrite=True, examples=[{"premise": "x", "label": 0}])
    assert (out_dir / "super_glue_rte.jinja").read_text() == before
    assert sorted(p.name for p in out_dir.iterdir()) == ["super_glue_rte.jinja"]


def test_generation_collection_keeps_template_choices_inside_blocks(tmp_path: Path) -> None:
    """No scored template has choices, so the task has none; a template with its own answer_choices
    (a fixed list or a per-row Jinja string) still reads them as answer_choices."""
    path = tmp_path / "templates.yaml"
    path.write_text("""\
dataset: xsum
templates:
  a1: !Template
    answer_choices: null
    id: a1
    jinja: 'Summarize: {{document}} ||| {{summary}}'
    metadata: !TemplateMetadata {original_task: true, metrics: [ROUGE]}
    name: summarize
  b2: !Template
    answer_choices: Yes ||| No
    id: b2
    jinja: 'Is "{{summary}}" a summary of "{{document}}"? ||| {{ answer_choices[0] }}'
    metadata: !TemplateMetadata {original_task: false}
    name: is summary
  c3: !Template
    answer_choices: '{{ summary }} ||| {{ document }}'
    id: c3
    jinja: 'Which is shorter? ||| {{ answer_choices[0] }}'
    metadata: !TemplateMetadata {original_task: false}
    name: shorter
""")
    row = {"document": "A long text.", "summary": "Short."}
    out = import_file(path, tmp_path / "tasks", "summarization", examples=[row])
    task = TaskRegistry.load([tmp_path / "tasks"], include_builtin=False).get("xsum")
    assert not task.has_choices and task.metrics == ("rouge_l",) and out.name == "xsum.jinja"
    assert task.render(row, 0, "summarize").target == "Short."
    assert task.render(row, 0, "is_summary").target == "Yes"
    assert task.render(row, 0, "shorter").target == "Short."
    assert task.scored_templates() == ["summarize"]


@pytest.mark.parametrize("text, expect", [
    ("dataset: x\n", "not a promptsource templates.yaml"),
    ("dataset: x\ntemplates: {a: !!python/object/apply:os.system [echo hi]}\n", "not a promptsource templates.yaml"),
    ("dataset: x\ntemplates: {a: !Template {name: n}}\n", "template a: needs 'name' and 'jinja'"),
    ("[", "not a promptsource templates.yaml"),
])
def test_bad_collections_are_named(tmp_path: Path, text: str, expect: str) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text(text)
    with pytest.raises(T2TError, match=expect):
        import_file(path, tmp_path / "out", "c")


def test_cli(collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "tasks"
    rc = main(["import", str(collection), "--cluster", "nli", "--out", str(out_dir), "--name", "rte_ps",
               "--example", '{"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": 0}'])
    assert rc == 0 and f"wrote {out_dir / 'rte_ps.jinja'}" in capsys.readouterr().out
    assert main(["check", str(out_dir)]) == 0
    with pytest.raises(T2TError, match="--example '\\[1\\]': a row is a JSON object"):
        main(["import", str(collection), "--cluster", "nli", "--out", str(out_dir), "--example", "[1]"])
    done = subprocess.run([sys.executable, "-m", "t2t.tasks", "import", str(tmp_path / "missing.yaml"),
                           "--cluster", "nli"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "missing.yaml: cannot read it" in done.stderr and done.stderr.count("\n") == 1


# promptsource/templates/quarel and app_reviews (HEAD of bigscience-workshop/promptsource): no template is
# marked original_task, yet every scored-looking one has answer choices, from row fields (quarel) or fixed.
NO_ORIGINAL = """\
dataset: quarel
templates:
  5b5f9d29: !Template
    answer_choices: '{{world_literals.world1[0]}} ||| {{world_literals.world2[0]}}'
    id: 5b5f9d29
    jinja: 'Here''s a logic test: {{question}} ||| {{answer_choices[answer_index]}}'
    metadata: !TemplateMetadata {original_task: false, metrics: [Accuracy]}
    name: logic_test
  2da8f134: !Template
    answer_choices: Ice ||| Carpet ||| Both
    id: 2da8f134
    jinja: '{{question}} Ice, Carpet or Both? ||| {{answer_choices[answer_index]}}'
    metadata: !TemplateMetadata {original_task: false}
    name: fixed
  77aa0000: !Template
    answer_choices: Yes ||| No
    id: 77aa0000
    jinja: 'Is "{{question}}" a question? ||| Certainly'
    metadata: !TemplateMetadata {original_task: false}
    name: target not a choice
  8086b434: !Template
    answer_choices: null
    id: 8086b434
    jinja: 'Write a question whose answer is {{answer_index}}. ||| {{question}}'
    metadata: !TemplateMetadata {original_task: false}
    name: generate question
"""
QUAREL_ROW = {"question": "Which is smoother?", "answer_index": 0,
              "world_literals": {"world1": ["ice"], "world2": ["carpet"]}}


def test_answer_choices_of_a_collection_without_original_templates_are_exposed(tmp_path: Path) -> None:
    """Imported as before, quarel would be a task without choices whose every template is inverted: nothing
    to score. Its templates with answer choices are rank-classified instead; one whose target is not among
    its choices, and the one without choices, stay inverted."""
    path = tmp_path / "templates.yaml"
    path.write_text(NO_ORIGINAL, encoding="utf-8")
    done = import_collection(path, tmp_path / "tasks", "qa", examples=[QUAREL_ROW])
    assert done.refused == []
    task = TaskRegistry.load([tmp_path / "tasks"], include_builtin=False).get("quarel")
    assert task.has_choices and task.metrics == ("accuracy",)
    assert task.scored_templates() == ["logic_test", "fixed"]
    assert "scored by rank classification" in task.templates["logic_test"].description
    ex = task.render(QUAREL_ROW, 0, "logic_test")
    assert ex.target == "ice" and ex.choices == ("ice", "carpet")
    assert task.render(QUAREL_ROW, 0, "fixed").choices == ("Ice", "Carpet", "Both")
    assert task.templates["target_not_a_choice"].inverted and task.templates["generate_question"].inverted
    assert task.render(QUAREL_ROW, 0, "target_not_a_choice").target == "Certainly"


def test_a_render_with_an_empty_target_is_declined(tmp_path: Path) -> None:
    """T0's pipeline (promptsource seqio_tasks/utils.py, apply_template) kept a row only if its inputs and
    targets were both non-empty; an unlabelled row (label -1) renders an empty target here."""
    path = tmp_path / "templates.yaml"
    path.write_text(COLLECTION.replace("{{ answer_choices[label] }}'\n    metadata: !TemplateMetadata\n"
                                       "      metrics: [Accuracy]\n      original_task: true\n    name: \"GPT",
                                       "{% if label >= 0 %}{{ answer_choices[label] }}{% endif %}'\n"
                                       "    metadata: !TemplateMetadata\n      metrics: [Accuracy]\n"
                                       "      original_task: true\n    name: \"GPT"), encoding="utf-8")
    assert "label >= 0" in path.read_text()
    import_file(path, tmp_path / "tasks", "nli", examples=ROWS)
    task = TaskRegistry.load([tmp_path / "tasks"], include_builtin=False).get("super_glue_rte")
    unlabelled = {**ROWS[0], "label": -1}
    assert task.render(unlabelled, 0, "gpt_3_style_2") is None
    assert task.render(ROWS[0], 0, "gpt_3_style_2").target == "Yes"
