"""``python -m t2t.experiment``: the claim behind multitask tuning, measured in four parts.

The command line (the package docstring, :mod:`t2t.experiment`, says what is measured): options from the
config dataclasses, then the run. The first line above is the command's --help description; it lives here
rather than read from the package, which imports this module.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from t2t import config as configs
from t2t.experiment.config import COMMAND, ExperimentConfig
from t2t.experiment.report import summary_markdown
from t2t.experiment.run import run_experiment


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=configs.program("t2t.experiment"), description=__doc__.split("\n\n")[0],
        epilog="--config YAML: these options as flat keys (or under experiment:), and any option of "
               "python -m t2t.finetune / t2t.evaluate under finetune: / evaluate:, flat or by section.")
    configs.add_arguments(parser, ExperimentConfig)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """defaults < ``--config`` YAML < flags."""
    return configs.from_args(ExperimentConfig, args, COMMAND)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    cfg = config_from_args(configs.parse_args(parser, configs.parse_bool_flags(argv, ExperimentConfig), COMMAND))
    print(summary_markdown(run_experiment(cfg)))
    return 0
