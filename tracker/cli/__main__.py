"""`python -m tracker.cli`, as `qrtracker`."""

import sys

from tracker.cli import main

sys.exit(main())
