"""``python -m t2t.tasks``: list, show, render and check task files.

    python -m t2t.tasks list [--cluster C] [--tag TAG] [--json]
    python -m t2t.tasks show TASK
    python -m t2t.tasks render TASK [--template T] [--n N] [--split S] [--seed K] [--no-options] [--json]
    python -m t2t.tasks check [PATHS...]
    python -m t2t.tasks import templates.yaml --cluster C [--out DIR] [--name N] [--overwrite] [--no-truncate]
    python -m t2t.tasks import-sni TASK.json... --out DIR [--test-tasks test_tasks.txt] [--mixture FILE.yaml]
    python -m t2t.tasks catalog [--markdown | --json | --check docs/catalog.md | --write docs/catalog.md]
    python -m t2t.tasks export-lm-eval TASK... --out DIR [--split S] [--limit N] [--seed K] [--overwrite]
    python -m t2t.tasks import-lm-eval TASK.yaml... --cluster C [--out DIR] [--name N] [--overwrite]
    python -m t2t.tasks import-alpaca | import-sharegpt | import-messages FILE --out DIR --name N --cluster C
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2t import config as configs
from t2t.atomic import write_text
from t2t.errors import T2TError, run_cli
from t2t.tasks import catalog, sources
from t2t.tasks.config import COMMAND, TasksConfig
from t2t.tasks.importers import chat_formats, lm_eval, sni
from t2t.tasks.importers.promptsource import import_collections
from t2t.tasks.registry import TaskRegistry, task_dirs
from t2t.tasks.runtime import TEXT_VAR_LENGTH
from t2t.tasks.task import SPLITS, Task, warn

# ``datasets`` takes seconds to import: t2t.tasks.sources imports it only when a split goes through it, and
# this module only to quiet it, so that the importers and ``--help`` do without it (tests/test_imports.py).


def quiet_datasets() -> None:
    """datasets prints a progress bar per split it builds; a preview tool should not."""
    import datasets

    datasets.disable_progress_bars()


def add_task_dir_option(parser: argparse.ArgumentParser) -> None:
    """--task-dir, --config and --save-config: the options shared by the subcommands that read tasks."""
    configs.add_arguments(parser, TasksConfig)
    configs.add_save_config(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def _choices_summary(task: Task, template: str | None) -> list[str] | str | None:
    fixed = task.fixed_choices(template)
    return list(fixed) if fixed is not None else ("per-row" if task.has_choices else None)


def task_summary(task: Task) -> dict[str, Any]:
    return {
        "name": task.name,
        "cluster": task.cluster,
        "templates": task.template_names,
        "inverted_templates": [n for n, t in task.templates.items() if t.inverted],
        "choices": _choices_summary(task, None),
        "template_choices": {n: _choices_summary(task, n) for n in task.template_names
                             if task.overrides_choices(n)},
        "metrics": list(task.metrics),
        "source": task.source,
        "source_id": task.source_id,
        "splits": task.splits,
        "path": str(task.path),
        "description": task.description,
    }


def preview_rows(task: Task, split: str, n: int) -> tuple[list[dict[str, Any]], str]:
    """Rows to preview: the split's real rows, or the file's example rows when the data cannot load."""
    if n < 1:
        raise T2TError(f"--n {n}: the number of rows to render must be at least 1")
    if split == "example":
        return task.example_rows[:n], "example"
    try:
        ds = sources.load_rows(task, split)  # looked up here: tests replace it
    except T2TError as exc:
        # Only a hub dataset that cannot be reached (offline) falls back; broken local data is an error.
        if not task.example_rows or "hf" not in task.source:
            raise
        warn(f"{exc}; rendering the file's example rows instead")
        return task.example_rows[:n], "example"
    return [ds[i] for i in range(min(n, len(ds)))], split


def check_rows(task: Task, n: int) -> tuple[list[tuple[str, int, dict[str, Any]]], list[str]]:
    """(where, index, row) triples to render for ``check``, and the problems loading them: the file's example rows,
    then the first ``n`` rows of every split of a generator or of local files. Hub datasets are not
    opened (``check`` runs offline)."""
    rows = [("the example rows", i, row) for i, row in enumerate(task.example_rows)]
    problems: list[str] = []
    if "generator" not in task.source and "files" not in task.source:
        return rows, problems
    for split in task.splits:
        try:
            if "generator" in task.source:  # looked up here: tests replace it
                ds = sources.load_rows(task, split)
                loaded = [ds[i] for i in range(min(n, len(ds)))]
            else:
                loaded = sources.first_rows(task, split, n)
        except T2TError as exc:
            problems.append(str(exc))
            continue
        rows += [(f"split '{split}'", i, row) for i, row in enumerate(loaded)]
    return rows, problems


def check_tasks(registry: TaskRegistry, generated_rows: int = 3) -> tuple[int, int, list[str]]:
    """Render every template of every task on its example rows and on the first rows of its generator or
    local files (``generated_rows`` per split); the first row a template fails on is named by number.

    Returns (tasks, renders, problems); a task with no rows to render is a problem.
    """
    problems: list[str] = []
    renders = 0
    for task in registry:
        rows, loading = check_rows(task, generated_rows)
        problems += loading
        if not rows:
            if not loading:
                problems.append(f"{task.path}: task '{task.name}': no example rows to check the templates on; "
                                "add an 'example:' row to the front matter")
            continue
        for name in task.template_names:
            rendered = 0
            for where, i, row in rows:
                try:  # the row's number in its split (or among the example rows), as the error names it
                    rendered += task.render(row, i, name) is not None
                    renders += 1
                except T2TError as exc:
                    problems.append(f"{exc} (in {where})")
                    break
            else:
                if rendered == 0:
                    problems.append(f"{task.path}: task '{task.name}', template '{name}': declined every "
                                    "example row; add an example row it renders")
    return len(registry), renders, problems


def import_promptsource(args: argparse.Namespace) -> int:
    """``import``: convert promptsource templates.yaml files into task files."""
    if args.name and len(args.paths) > 1:
        raise T2TError("--name names one task: give one templates.yaml with it")
    examples = []
    for text in args.example:
        try:
            row = json.loads(text)
        except ValueError as exc:
            raise T2TError(f"--example {text[:60]!r}: not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise T2TError(f"--example {text[:60]!r}: a row is a JSON object of fields, e.g. "
                           '\'{"premise": "...", "label": 0}\'')
        examples.append(row)
    for done in import_collections(args.paths, args.out, args.cluster, args.name, args.overwrite, examples,
                                   None if args.no_truncate else TEXT_VAR_LENGTH):  # all or nothing
        print(f"wrote {done.path} ({len(done.templates)} templates)")
        for name, template_id, reason in done.refused:
            print(f"  refused template '{name}' (promptsource {template_id}): {reason}")
    if not examples:
        print("add a row of the dataset as 'example:' in its front matter (or re-import with --example) so that "
              "'python -m t2t.tasks check' can render every template")
    print(f"check it with: python -m t2t.tasks check {args.out}")
    return 0


def import_sni(args: argparse.Namespace) -> int:
    """``import-sni``: convert Super-NaturalInstructions task JSON files into task files (t2t.tasks.importers.sni)."""
    test = sni.read_test_tasks(args.test_tasks) if args.test_tasks else set()
    mixture = Path(args.mixture) if args.mixture else None
    if mixture is not None and mixture.exists() and not args.overwrite:  # before any task file is written
        raise T2TError(f"{mixture} already exists; pass --overwrite to replace it")
    done = sni.import_tasks(args.paths, args.out, test, args.overwrite)
    print("\n".join(sni.describe(done)))
    if mixture is not None:
        mixture.parent.mkdir(parents=True, exist_ok=True)
        write_text(mixture, sni.mixture_text(done))
        print(f"wrote {mixture} (held out: {len(done.test_tasks)} test tasks); use it with "
              f"--mixture-dir {mixture.parent} --task-dir {args.out}")
    print(f"check it with: python -m t2t.tasks check {args.out}")
    return 0


def export_lm_eval(args: argparse.Namespace) -> int:
    """``export-lm-eval``: t2t tasks as lm-evaluation-harness task YAML with their rendered rows
    (t2t.tasks.importers.lm_eval)."""
    registry = TaskRegistry.load(args.task_dir)
    tasks = [registry.get(name) for arg in args.tasks for name in arg.split(",") if name]
    done = lm_eval.export_tasks(tasks, args.out, args.split, args.limit, args.seed, args.overwrite)
    for path in done.files:
        print(f"wrote {path}")
    for name, rows in done.rows.items():
        print(f"  {name}: {rows} rows")
    for task, metrics in done.dropped_metrics.items():
        print(f"  {task}: metrics {', '.join(metrics)} not exported (lm-eval has no built-in equivalent)")
    print(f"wrote {done.group}; run: lm_eval --model hf --model_args pretrained=MODEL,backend=seq2seq "
          f"--include_path {Path(args.out).resolve()} --tasks {lm_eval.GROUP}")
    print("t2t.evaluate scores the same quantity as lm-eval with --choice-scoring lm-eval")
    return 0


def import_lm_eval(args: argparse.Namespace) -> int:
    """``import-lm-eval``: lm-evaluation-harness task YAML files as t2t task files
    (t2t.tasks.importers.lm_eval)."""
    for done in lm_eval.import_tasks(args.paths, args.out, args.cluster, args.name, args.overwrite, args.example,
                                     args.task_dir, args.rename_clashes):
        print(f"wrote {done.path} (task {done.name}, template {lm_eval.TEMPLATE})")
        for note in done.notes:
            print(f"  note: {note}")
    print(f"check it with: python -m t2t.tasks check {args.out}")
    return 0


def import_chat(args: argparse.Namespace) -> int:
    """``import-alpaca``, ``import-sharegpt``, ``import-messages``: instruction or chat data as a task file
    and its JSON Lines data (t2t.tasks.importers.chat_formats)."""
    fmt = args.command.removeprefix("import-")
    done = chat_formats.import_file(fmt, args.path, args.out, args.name, args.cluster, args.task_dir,
                                    args.overwrite)
    print(f"wrote {done.task_file} and {done.data_file} ({done.rows} rows from {done.records} records)")
    if done.skipped:
        print(f"  left out {done.skipped} rows holding '|||' (t2t's input/target separator)")
    print(f"check it with: python -m t2t.tasks check {done.task_file}")
    return 0


def list_tasks(args: argparse.Namespace) -> int:
    """``list``: one line (or JSON record) per task, by cluster."""
    registry = TaskRegistry.load(args.task_dir)
    tasks = registry.by_cluster(args.cluster) if args.cluster else list(registry)
    if args.tag:
        tasks = [t for t in tasks if args.tag in t.tags]
    tasks = sorted(tasks, key=lambda t: (t.cluster, t.name))
    if args.json:
        print(json.dumps([task_summary(t) for t in tasks], indent=2))
        return 0
    rows = [("TASK", "CLUSTER", "KIND", "TEMPLATES", "TAGS", "SOURCE")]
    rows += [(t.name, t.cluster, "choices" if t.has_choices else "generation", str(len(t.templates)),
              ",".join(t.tags) or "-", t.source_id) for t in tasks]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    return 0


def show_task(args: argparse.Namespace) -> int:
    """``show``: a task's metadata and templates."""
    summary = task_summary(TaskRegistry.load(args.task_dir).get(args.task))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:<19} {value}")
    return 0


def render_records(task: Task, rows: Sequence[dict[str, Any]], split: str, templates: Sequence[str], seed: int,
                   options: bool) -> list[dict[str, Any]]:
    """Every row rendered with every template; a template that declines a row gives ``skipped``."""
    records = []
    for i, row in enumerate(rows):
        for name in templates:
            ex = task.render(row, i, name, seed=seed, options=options)
            records.append({"task": task.name, "template": name, "split": split, "index": i,
                            "input": ex.input if ex else None, "target": ex.target if ex else None,
                            "skipped": ex is None})
    return records


def render_task(args: argparse.Namespace) -> int:
    """``render``: rows of a task through one or every template."""
    task = TaskRegistry.load(args.task_dir).get(args.task)
    templates = [args.template] if args.template else task.template_names
    rows, used = preview_rows(task, args.split, args.n)
    records = render_records(task, rows, used, templates, args.seed, options=not args.no_options)
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
        return 0
    for r in records:
        print(f"--- {r['task']} / {r['template']} / {r['split']}[{r['index']}]")
        print("(declined by the template)" if r["skipped"] else f"{r['input']}\n>>> {r['target']}")
    return 0


def check_files(args: argparse.Namespace) -> int:
    """``check``: load the task files and render every template; 2 if any problem (all are printed)."""
    load_errors: list[T2TError] = []
    registry = TaskRegistry.load(args.task_dir, paths=args.paths or None, errors=load_errors)
    n_tasks, renders, problems = check_tasks(registry)
    problems = [str(e) for e in load_errors] + problems
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    where = args.paths or [str(d) for d in task_dirs(args.task_dir)]
    print(f"ok: {n_tasks} tasks, {renders} renders checked in {', '.join(map(str, where))}")
    return 0


COMMANDS = {"list": list_tasks, "show": show_task, "render": render_task, "check": check_files,
            "import": import_promptsource, "import-sni": import_sni, "catalog": catalog.run,
            "export-lm-eval": export_lm_eval, "import-lm-eval": import_lm_eval,
            **{f"import-{fmt}": import_chat for fmt in chat_formats.FORMATS}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=configs.program("t2t.tasks"),
                                     description=configs.plain(__doc__.split("\n")[0]))
    sub = parser.add_subparsers(dest="command", required=True)
    _add_browse_commands(sub)
    _add_import_commands(sub)
    _add_chat_import_commands(sub)
    catalog.add_parser(sub)  # docs/catalog.md's table (t2t.tasks.catalog)
    return parser


def _add_browse_commands(sub: argparse._SubParsersAction) -> None:
    """``list``, ``show``, ``render`` and ``check``: the task files as they are."""
    p_list = sub.add_parser("list", help="list tasks")
    p_list.add_argument("--cluster", metavar="CLUSTER", help="only the tasks of this cluster")
    p_list.add_argument("--tag", metavar="TAG", help="only the tasks with this tag (e.g. hub, sni)")
    p_list.add_argument("--json", action="store_true", help="print JSON records (every field of 'show')")
    p_show = sub.add_parser("show", help="show a task's metadata and templates")
    p_show.add_argument("task", metavar="TASK", help="the task's name (see 'list')")
    p_show.add_argument("--json", action="store_true", help="print JSON")
    p_render = sub.add_parser("render", help="render rows of a task")
    p_render.add_argument("task", metavar="TASK", help="the task's name (see 'list')")
    p_render.add_argument("--template", metavar="TEMPLATE", help="one template (default: all)")
    p_render.add_argument("--n", type=int, default=3, metavar="INT", help="rows to render (default 3)")
    p_render.add_argument("--split", default="validation", choices=("example", *SPLITS),
                          help="train, validation, test or 'example' for the file's example rows "
                               "(default validation; a hub dataset that cannot load falls back to the example rows)")
    p_render.add_argument("--seed", type=int, default=0, metavar="INT",
                          help="seed of the template's random draws (default 0)")
    p_render.add_argument("--no-options", action="store_true", help="render FLAN's no-options variant")
    p_render.add_argument("--json", action="store_true", help="print JSON records")
    p_check = sub.add_parser("check", help="validate task files by rendering every template")
    p_check.add_argument("paths", nargs="*", help="files or folders (default: every task folder)")
    for p in (p_list, p_show, p_render, p_check):
        add_task_dir_option(p)


def _add_import_commands(sub: argparse._SubParsersAction) -> None:
    """``import`` (promptsource), ``import-sni``, ``export-lm-eval`` and ``import-lm-eval``: other formats."""
    p_import = sub.add_parser("import", help="convert a promptsource templates.yaml into a t2t task file")
    p_import.add_argument("paths", nargs="+", metavar="TEMPLATES_YAML", help="promptsource templates.yaml file(s)")
    p_import.add_argument("--cluster", required=True, metavar="CLUSTER",
                          help="the cluster of the imported task(s), e.g. nli")
    p_import.add_argument("--out", default="templates/imported", metavar="DIR",
                          help="folder to write to (default %(default)s)")
    p_import.add_argument("--name", metavar="NAME", help="task name (default DATASET_SUBSET; only with one file)")
    p_import.add_argument("--example", action="append", default=[], metavar="JSON",
                          help="a dataset row as JSON, written as the file's example row and rendered by every "
                               "template now and by 'check' later (repeatable)")
    p_import.add_argument("--overwrite", action="store_true", help="replace an existing task file")
    p_import.add_argument("--no-truncate", action="store_true",
                          help="render full field text (default: promptsource's cut of every {{ }} value to "
                               f"{TEXT_VAR_LENGTH} characters, as T0's data)")
    p_import.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p_sni = sub.add_parser("import-sni", help="convert Super-NaturalInstructions task JSON files into task files")
    p_sni.add_argument("paths", nargs="+", metavar="TASK_JSON", help="tasks/taskNNN_name.json file(s)")
    p_sni.add_argument("--out", required=True, metavar="DIR", help="folder for the task files (and their data/ folder)")
    p_sni.add_argument("--test-tasks", metavar="FILE",
                       help="SNI's held-out list (splits/default/test_tasks.txt): these tasks become test-only, "
                            "first 100 instances scored")
    p_sni.add_argument("--mixture", metavar="FILE.yaml",
                       help="also write a mixture training on the train tasks with the test tasks held out")
    p_sni.add_argument("--overwrite", action="store_true", help="replace existing files")
    p_sni.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p_export = sub.add_parser("export-lm-eval", help="write lm-evaluation-harness task YAML for t2t tasks")
    p_export.add_argument("tasks", nargs="+", metavar="TASK", help="task names (comma-separated or repeated)")
    p_export.add_argument("--out", required=True, metavar="DIR",
                          help="folder for the YAML files and their data/ folder")
    p_export.add_argument("--split", default="validation", choices=SPLITS,
                          help="split to render (default validation; else test, then train, as t2t.evaluate)")
    p_export.add_argument("--limit", type=int, metavar="INT", help="the first N rows of each task (default: every row)")
    p_export.add_argument("--seed", type=int, default=0, metavar="INT",
                          help="render seed, as t2t.evaluate --seed (default 0)")
    p_export.add_argument("--overwrite", action="store_true", help="replace existing files")
    add_task_dir_option(p_export)
    p_lm_import = sub.add_parser("import-lm-eval", help="convert lm-evaluation-harness task YAML into task files")
    p_lm_import.add_argument("paths", nargs="+", metavar="TASK_YAML", help="lm-eval task YAML file(s)")
    p_lm_import.add_argument("--cluster", required=True, metavar="CLUSTER",
                             help="the cluster of the imported task(s), e.g. qa")
    p_lm_import.add_argument("--out", default="templates/imported", metavar="DIR",
                             help="folder to write to (default %(default)s)")
    p_lm_import.add_argument("--name", metavar="NAME", help="task name (default: the YAML's task:; only with one file)")
    p_lm_import.add_argument("--overwrite", action="store_true", help="replace an existing task file")
    p_lm_import.add_argument("--example", action="append", default=[], metavar="JSON",
                             help="a dataset row as JSON, written as the file's example row (default: the first "
                                  "row of the YAML's local JSON Lines data) for 'check' to render (repeatable)")
    p_lm_import.add_argument("--rename-clashes", action="store_true",
                             help="import a task whose name another task has (built-in, --task-dir, --out) as "
                                  "NAME_2, NAME_3, ... (default: refuse it)")
    add_task_dir_option(p_lm_import)


CHAT_FORMATS = {"alpaca": "alpaca JSON or JSON Lines ({instruction, input, output})",
                "sharegpt": "sharegpt conversations ({conversations: [{from, value}]})",
                "messages": "OpenAI chat fine-tuning JSON Lines ({messages: [{role, content}]})"}


def _add_chat_import_commands(sub: argparse._SubParsersAction) -> None:
    """``import-alpaca``, ``import-sharegpt``, ``import-messages``: instruction and chat data files."""
    for fmt, what in CHAT_FORMATS.items():
        p = sub.add_parser(f"import-{fmt}", help=f"convert {what} into a task file and its data")
        p.add_argument("path", metavar="FILE", help=f"the {fmt} data file")
        p.add_argument("--out", required=True, metavar="DIR", help="folder for the task file (and its data/ folder)")
        p.add_argument("--name", metavar="NAME", help="task name (default: the file's name)")
        p.add_argument("--cluster", required=True, metavar="CLUSTER", help="the task's cluster, e.g. chat")
        p.add_argument("--overwrite", action="store_true", help="replace this task's earlier files")
        add_task_dir_option(p)  # the names of the tasks there (and the built-ins) are not reused


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "save_config"):  # a subcommand that reads tasks: defaults < --config < flags
        cfg = configs.from_args(TasksConfig, args, COMMAND)
        args.task_dir = list(cfg.registry.task_dir)
        if args.save_config:
            configs.save(cfg, args.save_config)
    if not args.command.startswith("import"):  # the other commands may load rows
        quiet_datasets()
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
