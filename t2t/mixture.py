"""``python -m t2t.mixture``: list the mixtures, show one's tasks, rates and held-out split, sample its stream.

    python -m t2t.mixture list
    python -m t2t.mixture show NAME [--heldout C] [--json]
    python -m t2t.mixture sample NAME [--n N] [--seed S] [--heldout C] [--json]
    python -m t2t.mixture check NAME [--n 13] [--split validation] [--heldout C] [--json]

``check`` prints, per held-out task, its rows that share an n-gram (13 words by default) with a row the
mixture trains on, GPT-3's contamination test: ``k/n`` dirty, a percentage and the training tasks they overlap;
``--json`` names each dirty row's training tasks and first shared n-gram (:mod:`t2t.mixtures.contamination`).
Without network, hub tasks are not retried one by one (:mod:`t2t.mixtures.contamination_hub`; HF_HUB_OFFLINE=1
reads cached copies only).

Options: defaults < ``--config`` YAML (:class:`t2t.mixtures.config.MixtureConfig`, flat keys or under
mixture/sample) < flags; ``--save-config FILE`` writes the resolved options for ``--config``. The rules
behind the rates and the held-out split: :mod:`t2t.mixtures.resolve`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from t2t import config as configs
from t2t.errors import T2TError, run_cli
from t2t.mixtures import contamination
from t2t.mixtures.config import COMMAND, MixtureConfig
from t2t.mixtures.resolve import load_mixture
from t2t.mixtures.spec import MixtureRegistry
from t2t.mixtures.table import show_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=configs.program("t2t.mixture"),
                                     description=configs.plain(__doc__.split("\n")[0]))
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list the mixtures")
    p_show = sub.add_parser("show", help="tasks, rates and the held-out split of a mixture")
    p_sample = sub.add_parser("sample", help="print rendered draws of a mixture's training stream")
    p_check = sub.add_parser("check", help="held-out rows that share a 13-gram with the training rows (GPT-3)")
    for p in (p_show, p_sample, p_check):
        p.add_argument("name", nargs="?", help="the mixture (or mixture: in --config)")
    configs.add_arguments(p_list, MixtureConfig, only=())
    p_list.add_argument("--task-dir", dest="task_dir", action="append", metavar="DIR",
                        help="extra folder of task files (repeatable; also T2T_TASK_PATH)")
    p_list.add_argument("--mixture-dir", dest="mixture_dir", action="append", metavar="DIR",
                        help="extra folder of mixture files (repeatable; also T2T_MIXTURE_PATH)")
    configs.add_arguments(p_show, MixtureConfig, only=("mixture",))
    configs.add_arguments(p_sample, MixtureConfig, only=("mixture", "sample"))
    configs.add_arguments(p_check, MixtureConfig, only=("mixture", "check"))
    p_check.add_argument("--n", dest="ngram", default=None, metavar="N", help="the same as --ngram")
    for p in (p_list, p_show, p_sample, p_check):
        configs.add_save_config(p)
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = configs.parse_args(build_parser(), configs.parse_bool_flags(argv, MixtureConfig, positionals=True),
                              COMMAND)
    if getattr(args, "name", None) is not None:
        args.mixture = args.name  # the positional NAME is the mixture option
    cfg = configs.from_args(MixtureConfig, args, COMMAND)
    if args.save_config:
        configs.save(cfg, args.save_config)
    import datasets

    datasets.disable_progress_bars()
    m = cfg.mixture
    if args.command == "list":
        specs = sorted(MixtureRegistry.load(m.mixture_dir), key=lambda s: s.name)
        if args.json:
            print(json.dumps([{"name": s.name, "path": str(s.path), "description": s.description}
                              for s in specs], indent=2))
        else:
            width = max([len(s.name) for s in specs] + [4])
            for s in specs:
                print(f"{s.name:<{width}}  {s.description or '-'}  ({s.path})")
        return 0
    if m.mixture is None:
        raise T2TError(f"{args.command}: name the mixture (python -m t2t.mixture {args.command} NAME), or give "
                       "mixture: in --config")
    mixture = load_mixture(m.mixture, heldout=m.heldout, allow_source_overlap=m.allow_source_overlap,
                           task_dirs=m.task_dir, mixture_dirs=m.mixture_dir)
    if args.command == "check":
        report = contamination.check(mixture, n=cfg.check.ngram, split=cfg.check.split)
        print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
        return 0
    if args.command == "show":
        if args.json:
            manifest = mixture.manifest()
            for t in manifest["tasks"]:
                t["per_1000"] = 1000 * t["rate"]
            print(json.dumps(manifest, indent=2))
        else:
            print(show_table(mixture))
        return 0
    from t2t.mixtures.stream import ExampleStream  # torch (IterableDataset, ~4 s): only to sample

    s = cfg.sample
    draws = ExampleStream(mixture, seed=s.seed, stop=s.stop).draws(s.start, s.n)
    if args.json:
        print(json.dumps([d.as_dict() for d in draws], indent=2, ensure_ascii=False))
    else:
        for d in draws:
            print(f"--- [{d.position}] {d.example.task} / {d.example.template} / {d.variant} / row {d.row}")
            print(f"{d.example.input}\n>>> {d.example.target}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
