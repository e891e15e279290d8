"""``python -m t2t.experiment``: the claim behind multitask tuning, measured in four parts.

On the offline suite by default, for each training seed it trains

1. (a) multitask: one LoRA adapter on every training task of the mixture;
2. (b) single-task: one LoRA adapter on one training task (``--single-task``), same steps, batch and
   learning rate;

and then, for each part named in ``--parts`` (the first three by default):

- ``unseen``: one evaluation scores the base and every adapter zero-shot on the mixture's held-out tasks
  (median over templates), each delta with a paired-bootstrap interval over the evaluated rows
  (:mod:`t2t.evaluation.significance`); the summary gives each kind's mean and spread over the seeds: the
  rows' luck and the training run's luck, measured separately.
- ``overfitting``: (a) and (b) keep adapter snapshots at ``--curve-points`` evenly spaced steps and log the
  validation loss of the specialist's task on the same rows in both runs (``val_loss/TASK``); every
  snapshot is scored on that task's validation rows. Does the specialist overfit earlier, and by how much?
- ``one_vs_many``: one specialist per other training task (or per cluster, ``--specialists cluster``),
  first seed only, same budget; each training task is scored for the base, its specialist and the
  multitask adapters; trainable parameters, disk and training time of one adapter against the
  specialists' (the T5 paper's Table 11 question).
- ``clusters``: FLAN's curve (Wei et al. 2021, section 4.3): the clusters named by ``--curve-heldout`` are
  held out whole; one adapter per number K of other clusters, added in decreasing order of tasks (ties by
  name), first seed only; the base and every ``clusters-K`` adapter scored on the held-out clusters' tasks.

Both kinds see the same held-out split, so neither ever trains on a scored task. Everything lands in
``--output-dir`` (default ``runs/experiment``): ``config.yaml`` (the resolved options), ``seed-S/multitask/``,
``seed-S/single-<task>/`` (and ``seed-S/cluster-<name>/``), ``eval/`` (report.md, results.json, report.png,
config.yaml), ``overfitting/eval/``, ``one-vs-many/<task>/`` and ``summary.md`` / ``summary.json``.

The config composes the two commands' own (:mod:`t2t.experiment.config`): the experiment's options,
a finetune config (the recipe of every adapter) and an evaluate config (every evaluation); ``--max-steps``
is the finetune one, ``--limit`` the evaluate one, and ``--config`` YAML may give any finetune or evaluate
option under ``finetune:`` / ``evaluate:``.

The package, top to bottom: :mod:`~t2t.experiment.config` (the options), :mod:`~t2t.experiment.plan`
(the runs, specialists' mixtures and output folders, decided before training), :mod:`~t2t.experiment.run`
(training and scoring each part), :mod:`~t2t.experiment.report` (the summary over seeds, ``summary.md``),
:mod:`~t2t.experiment.cli` (the command line).
"""

from t2t.experiment.cli import build_parser, config_from_args, main
from t2t.experiment.config import (
    EVALUATE_SETS,
    FINETUNE_SETS,
    PARTS,
    ExperimentConfig,
    ExperimentOptions,
    build_experiment,
)
from t2t.experiment.plan import cluster_mixture, single_task_mixture

__all__ = ["EVALUATE_SETS", "FINETUNE_SETS", "PARTS", "ExperimentConfig", "ExperimentOptions", "build_experiment",
           "build_parser", "cluster_mixture", "config_from_args", "main", "single_task_mixture"]
