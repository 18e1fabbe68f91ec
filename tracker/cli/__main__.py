"""`python -m tracker.cli`, as `qrtracker`."""

import sys

from tracker.cli import main

if __name__ == "__main__":  # imported (a check of every module), it runs nothing
    sys.exit(main())
