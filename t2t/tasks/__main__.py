import sys

from t2t.errors import run_cli
from t2t.tasks.cli import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
