"""Golden values for the randomness t2t derives from names (t2t/seeds.py): the same on every machine.

t2t promises that a seed renders the same text on any machine, Python and process: the seeded template
helpers (``shuffle``, ``choice``, ``randint``, seeded per (seed, task, template, row)), FLAN-style
options a template shuffles with them, the k-shot exemplars drawn for evaluation prompts (per seed, task,
template, split, row) and the few-shot variants of the training stream (per seed, task, row, template).
The values below were recorded from t2t at commit ebf44c5 (what users' runs and reports hold) and are
checked here and in two fresh interpreters with different ``PYTHONHASHSEED``s, so that nothing reaches
Python's per-process ``hash()``.

They must never change. A changed value means that an evaluation reported with ``--num-shots`` no longer
reproduces (other exemplars), that a run resumed after an upgrade trains on other text than it started
with, and that two processes of one DDP run on different versions render different prompts. A change that
is truly wanted is a breaking change (new seeds, a new stream version), not an update of these numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from t2t.evaluation.prompts import Exemplars, build_prompts
from t2t.mixtures.resolve import load_mixture
from t2t.mixtures.stream import ExampleStream
from t2t.seeds import stable_seed
from t2t.tasks.fewshot import FEW_SHOT_SEP
from t2t.tasks.sandbox import T2TSandbox
from t2t.tasks.task import Task

REPO = Path(__file__).resolve().parent.parent

# Every seeded helper, FLAN's options in the choices' order ({{ options }}) and shuffled by a template.
TASK = """\
---
cluster: golden
source: {generator: compare_numbers, sizes: {train: 40, validation: 8}}
choices: ["alpha", "beta", "gamma", "delta"]
answer: "{{ choices[label % 4] }}"
---
{% block helpers %}
{% set letters, picks = ["p", "q", "r", "s", "t"], ["x", "y", "z"] %}
{{ a }} vs {{ b }}: {{ shuffle(letters) | join("") }} {{ choice(picks) }} {{ randint(0, 999) }}
|||
{{ answer }}
{% endblock %}
{% block flan_options %}
Is {{ a }} {{ ask }} than {{ b }}? {{ options }}
|||
{{ answer }}
{% endblock %}
{% block shuffled_options %}
Is {{ a }} {{ ask }} than {{ b }}?
OPTIONS:
- {{ shuffle(choices) | join("\n- ") }}
|||
{{ answer }}
{% endblock %}
"""
MIXTURE = """\
include: {tasks: [golden]}
templates: {subset: {golden: [helpers, shuffled_options]}, variants: {few_shot: 1.0}, few_shot_k: 2}
"""
ROWS = [{"a": 10 + i, "b": 30 - i, "ask": ("larger", "smaller")[i % 2], "label": i} for i in range(12)]

GOLDEN: dict[str, Any] = {
    "stable_seed": [9933203691216973421, 16679822726210988949],
    "helpers": {
        "0": [
            "10 vs 30: rtsqp x 621",
            "11 vs 29: qrtsp x 976",
            "12 vs 28: pstrq y 909",
            "13 vs 27: rtqps y 212",
        ],
        "7": [
            "10 vs 30: qprts z 728",
            "11 vs 29: spqtr y 46",
            "12 vs 28: qtrps y 418",
            "13 vs 27: srpqt z 350",
        ],
    },
    "flan_options": {
        "0": [
            "Is 10 larger than 30? OPTIONS:\n- alpha\n- beta\n- gamma\n- delta",
            "Is 11 smaller than 29? OPTIONS:\n- alpha\n- beta\n- gamma\n- delta",
            "Is 12 larger than 28? OPTIONS:\n- alpha\n- beta\n- gamma\n- delta",
            "Is 13 smaller than 27? OPTIONS:\n- alpha\n- beta\n- gamma\n- delta",
        ],
        "7": [
            "Is 10 larger than 30? OPTIONS:\n- alpha\n- beta\n- gamma\n- delta",
            "Is 11 smaller than 29? OPTIONS:\n- alpha\n- beta\n- gamma\n- delta",
            "Is 12 larger than 28? OPTIONS:\n- alpha\n- beta\n- gamma\n- delta",
            "Is 13 smaller than 27? OPTIONS:\n- alpha\n- beta\n- gamma\n- delta",
        ],
        "no_options": "Is 10 larger than 30?",
    },
    "shuffled_options": {
        "0": [
            "Is 10 larger than 30?\nOPTIONS:\n- delta\n- gamma\n- beta\n- alpha",
            "Is 11 smaller than 29?\nOPTIONS:\n- beta\n- delta\n- gamma\n- alpha",
            "Is 12 larger than 28?\nOPTIONS:\n- gamma\n- alpha\n- beta\n- delta",
            "Is 13 smaller than 27?\nOPTIONS:\n- gamma\n- delta\n- alpha\n- beta",
        ],
        "7": [
            "Is 10 larger than 30?\nOPTIONS:\n- gamma\n- alpha\n- beta\n- delta",
            "Is 11 smaller than 29?\nOPTIONS:\n- beta\n- alpha\n- gamma\n- delta",
            "Is 12 larger than 28?\nOPTIONS:\n- beta\n- delta\n- gamma\n- alpha",
            "Is 13 smaller than 27?\nOPTIONS:\n- delta\n- beta\n- alpha\n- gamma",
        ],
    },
    "exemplars": {
        "0/validation": [[10, 4, 2], [0, 5, 8], [4, 8, 9], [7, 2, 8], [1, 0, 10], [3, 10, 8]],
        "0/train": [[11, 3, 9], [7, 11, 2], [11, 10, 6], [9, 8, 11], [3, 2, 6], [8, 9, 4]],
        "5/validation": [[1, 10, 4], [10, 2, 7], [3, 6, 0], [0, 2, 8], [3, 6, 5], [1, 4, 8]],
        "5/train": [[5, 10, 4], [2, 3, 5], [0, 1, 7], [0, 10, 8], [2, 9, 5], [4, 2, 10]],
    },
    # (template, row, exemplar 1 x/y, exemplar 2 x/y, query): the input split at FLAN's "\n\n\n"
    "stream_few_shot": [
        ["helpers", 6, [
            "87 vs 4: pqstr z 955\n\nbeta",
            "78 vs 27: pqstr y 844\n\nalpha",
            "93 vs 9: qpsrt y 784",
        ]],
        ["shuffled_options", 36, [
            "Is 18 smaller than 38?\nOPTIONS:\n- alpha\n- beta\n- delta\n- gamma\n\nalpha",
            "Is 53 larger than 1?\nOPTIONS:\n- alpha\n- beta\n- gamma\n- delta\n\nalpha",
            "Is 75 smaller than 36?\nOPTIONS:\n- gamma\n- alpha\n- delta\n- beta",
        ]],
        ["helpers", 29, [
            "59 vs 61: sqprt y 140\n\nbeta",
            "93 vs 9: qpsrt y 784\n\nalpha",
            "6 vs 22: pstrq z 112",
        ]],
        ["shuffled_options", 27, [
            "Is 93 larger than 9?\nOPTIONS:\n- alpha\n- gamma\n- delta\n- beta\n\nalpha",
            "Is 98 larger than 25?\nOPTIONS:\n- alpha\n- delta\n- beta\n- gamma\n\nalpha",
            "Is 47 larger than 1?\nOPTIONS:\n- alpha\n- gamma\n- delta\n- beta",
        ]],
    ],
}


def observed(folder: Path) -> dict[str, Any]:
    """Everything GOLDEN freezes, computed afresh (``folder`` receives the task and mixture files)."""
    (folder / "tasks").mkdir(parents=True, exist_ok=True)
    (folder / "mixtures").mkdir(exist_ok=True)
    (folder / "tasks" / "golden.jinja").write_text(TASK)
    (folder / "mixtures" / "golden.yaml").write_text(MIXTURE)
    task = Task(folder / "tasks" / "golden.jinja", T2TSandbox([folder / "tasks"]))
    out: dict[str, Any] = {
        "stable_seed": [stable_seed("sentiment_movie", "t1", 3), stable_seed("t2t.synthetic", "arith_sum",
                                                                              "train", 0, byteorder="big")],
    }
    for template in ("helpers", "flan_options", "shuffled_options"):
        out[template] = {str(seed): [task.render(ROWS[i], i, template, seed=seed).input for i in range(4)]
                         for seed in (0, 7)}
    out["flan_options"]["no_options"] = task.render(ROWS[0], 0, "flan_options", options=False).input
    # k-shot evaluation: the train rows drawn for each validation row (and for train rows: never their own)
    exemplars = {}
    for seed in (0, 5):
        pool = Exemplars(task, seed, rows=ROWS)
        for split in ("validation", "train"):
            prompts, _ = build_prompts(task, ROWS[:6], split, "helpers", num_shots=3, seed=seed, exemplars=pool)
            exemplars[f"{seed}/{split}"] = [list(p.shots) for p in prompts]
    out["exemplars"] = exemplars
    # The training stream's few-shot variant: which rows each draw's exemplars are (read from their text).
    mixture = load_mixture("golden", task_dirs=[folder / "tasks"], mixture_dirs=[folder / "mixtures"],
                           include_builtin=False)
    stream = ExampleStream(mixture, seed=3)
    draws = (stream.draw(position).example for position in range(4))
    out["stream_few_shot"] = [[ex.template, ex.index, ex.input.split(FEW_SHOT_SEP)] for ex in draws]
    return out


def test_seeded_renders_and_exemplars_match_the_golden_values(tmp_path: Path) -> None:
    assert observed(tmp_path) == GOLDEN


def test_golden_values_do_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    code = ("import json, sys; from pathlib import Path; from tests.test_seeds import observed; "
            "print(json.dumps(observed(Path(sys.argv[1]))))")
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / hash_seed)], capture_output=True,
                              text=True, cwd=REPO, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.strip().splitlines()[-1]) == GOLDEN
