"""``python -m t2t.predict``."""

import sys

from t2t.errors import run_cli
from t2t.predict.cli import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
