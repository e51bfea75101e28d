"""`python -m ftlab <tool> ...`: the same as the `ftlab` console script."""
import sys

from ftlab.cli import main

sys.exit(main())
