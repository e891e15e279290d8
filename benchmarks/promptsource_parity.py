"""Import every promptsource templates.yaml under a folder and compare t2t's renders with promptsource's.

    python benchmarks/promptsource_parity.py PROMPTSOURCE/promptsource/templates [--json-out report.json]

promptsource's rendering is the re-implementation of ``Template.apply`` in
``tests/tasks/test_promptsource_fidelity.py`` (here with StrictUndefined, so a template the synthetic
row cannot feed is "not comparable" rather than silently compared on empty text). One synthetic row
per file: every top-level name the file's templates use, a label-like name (label, idx, answer, *_label,
*_id) set to 0 and every other to a short sentence. Per template:

- not random: promptsource's [input, target] and answer-choice list against t2t's render (t2t's
  target-in-choices check is off: the synthetic labels need not fit the choices);
- declined: promptsource renders an empty side or nothing, t2t must decline the row;
- random (`choice`, `random`): each of 10 seeded t2t renders must be among 300 promptsource draws;
- promptsource raises only because of its truncation rewrite: t2t's render against ``apply(truncate=False)``.

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "tasks")]

import test_promptsource_fidelity as ref  # noqa: E402

from t2t.errors import T2TError  # noqa: E402
from t2t.tasks.importers.promptsource import block_ids, import_collection, read_collection  # noqa: E402
from t2t.tasks.registry import TaskRegistry  # noqa: E402

LABELS = {"label", "idx", "answer_idx", "gold", "correct", "answerKey", "target", "score", "labels", "answer"}


def synthetic_row(collection: dict[str, Any], env: jinja2.Environment) -> dict[str, Any]:
    names: set[str] = set()
    for t in collection["templates"]:
        for src in (t["jinja"], t.get("answer_choices") if isinstance(t.get("answer_choices"), str) else ""):
            try:
                names |= meta.find_undeclared_variables(env.parse(src))
            except jinja2.TemplateError:
                pass
    names.discard("answer_choices")
    return {n: 0 if n in LABELS or n.endswith(("label", "_id")) else f"Text of {n}, with words." for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("templates", type=Path)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    env = jinja2.Environment(loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined)
    env.globals.update(zip=zip)
    env.filters.update(choice=lambda c: random.choice(c), most_frequent=ref._most_frequent)
    ref.ENV = env
    stats: Counter[str] = Counter()
    report: dict[str, list[Any]] = {"failed": [], "refused": [], "mismatch": []}
    out = Path(tempfile.mkdtemp(prefix="ps-parity-"))
    for k, f in enumerate(sorted(args.templates.rglob("templates.yaml"))):
        collection = read_collection(f)
        stats["files"] += 1
        stats["templates"] += len(collection["templates"])
        try:
            done = import_collection(f, out / str(k), "c")
        except T2TError as exc:
            report["failed"].append([str(f), str(exc)])
            continue
        stats["files_imported"] += 1
        stats["templates_refused"] += len(done.refused)
        report["refused"] += [[str(f), n, r] for n, _, r in done.refused]
        task = TaskRegistry.load([out / str(k)], include_builtin=False).get(done.path.stem)
        task.templates = {n: dataclasses.replace(t, inverted=True) for n, t in task.templates.items()}
        blocks = {v: b for b, v in block_ids(collection).items()}
        row = synthetic_row(collection, env)
        for t in collection["templates"]:
            name = blocks[t["id"]]
            if name not in task.templates:
                continue
            if "choice" in t["jinja"].replace("answer_choices", "") or "random" in t["jinja"]:
                try:
                    pool = set()
                    for seed in range(300):
                        random.seed(seed)
                        pool.add(tuple(ref.reference_apply(t, row)))
                except Exception:
                    stats["random_not_comparable"] += 1
                    continue
                if any(len(w) != 2 or not all(w) for w in pool):
                    stats["random_not_comparable"] += 1
                    continue
                stats["random_compared"] += 1
                try:
                    ok = all((ex := task.render(row, 0, name, seed=s)) is not None and (ex.input, ex.target) in pool
                             for s in range(10))
                except T2TError:
                    ok = False
                stats["random_possible"] += ok
                if not ok:
                    report["mismatch"].append([str(f), t["name"], "random render not among promptsource's"])
                continue
            try:
                want = ref.reference_apply(t, row)
                want_c = (ref.reference_choices(t["answer_choices"], row)
                          if isinstance(t.get("answer_choices"), str) else None)
            except Exception:
                # promptsource's textual rewrite `}}` -> `| string | truncate(2048) }}` binds to the last
                # operand: `{{ (x | round) / 5 }}` becomes `x / "5"`, a TypeError there; t2t cuts the value.
                try:
                    want = ref.reference_apply(t, row, truncate=False)
                except Exception:
                    stats["not_comparable"] += 1
                    continue
                stats["promptsource_raises_only_when_truncating"] += 1
                ex = None
                try:
                    ex = task.render(row, 0, name)
                except T2TError:
                    pass
                stats["of_those_t2t_renders_untruncated_text"] += ex is not None and [ex.input, ex.target] == want
                continue
            if len(want) != 2 or not all(want):
                stats["declined_compared"] += 1
                try:
                    agree = task.render(row, 0, name) is None and (len(want) == 2 or want == [""])
                except T2TError:
                    agree = len(want) != 2
                stats["declined_agree"] += agree
                continue
            stats["compared"] += 1
            try:
                ex = task.render(row, 0, name)
                got = [ex.input, ex.target] if ex else None
                got_c = list(task.choices_for(row, name, 0)) if want_c is not None and task.has_choices else want_c
            except T2TError as exc:
                got, got_c = str(exc), None
            if got == want and got_c == want_c:
                stats["equal"] += 1
            else:
                report["mismatch"].append([str(f), t["name"], want, got, want_c, got_c])
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    for f, n, r in report["refused"]:
        print(f"refused: {f}: {n}: {r[:160]}")
    print(json.dumps(dict(stats)))


if __name__ == "__main__":
    main()
