"""``python -m moralkit VERB ...``: the ``moralkit`` command (:mod:`moralkit.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
