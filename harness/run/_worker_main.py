"""Script form of :mod:`harness.run.worker`, for launchers that start a file rather than a module (msrun)."""
import sys

from harness.run.worker import main

if __name__ == "__main__":
    sys.exit(main())
