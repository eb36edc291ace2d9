"""`python -m modeling_mtqnet COMMAND ...`: the same as the `mtqnet` command."""

import sys

from .cli import main

sys.exit(main())
