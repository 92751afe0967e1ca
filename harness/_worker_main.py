"""Script form of :mod:`harness.worker`, for launchers that start a file rather than a module (msrun)."""
import sys

from harness.worker import main

if __name__ == "__main__":
    sys.exit(main())
