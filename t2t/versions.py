"""The versions of Python and the libraries behind a result, written beside every run and report."""

from __future__ import annotations

import importlib.metadata as md
import sys


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("t2t", "torch", "transformers", "peft", "datasets", "accelerate", "sentencepiece", "jinja2"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
