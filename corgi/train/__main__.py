"""``python -m corgi.train``: the main job."""

import sys

from .cli import run

if __name__ == "__main__":
    sys.exit(run())
