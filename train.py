#!/usr/bin/env python
"""Train MTQ-Net or a MOSA-Net teacher: the same command as `mtqnet train` (see `python train.py --help`).

The recipe itself is `modeling_mtqnet/training/recipe.py`; this file is only its entry point at the top of the
repository, where the transformers examples keep theirs. Errors print one line (`python train.py --debug ...`, as
the first argument, shows the traceback).
"""

import sys

from modeling_mtqnet.cli import run_command

if __name__ == "__main__":
    debug = sys.argv[1:2] == ["--debug"]
    sys.exit(run_command("train", sys.argv[2 if debug else 1:], prog="train.py", debug=debug))
