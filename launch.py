"""Open the VLA Workbench in a browser: ``python launch.py [--host H] [--port P] [--share] [--runs-dir D] [--datasets-dir D]``."""

import sys

from app.launcher import main

if __name__ == "__main__":
    sys.exit(main())
