#!/usr/bin/env python
"""Train MTQ-Net or a MOSA-Net teacher: the same command as `mtqnet train` (see `python train.py --help`).

The recipe itself is `modeling_mtqnet/training/recipe.py`; this file is only its entry point at the top of the
repository, where the transformers examples keep theirs.
"""

from modeling_mtqnet.training.recipe import main

if __name__ == "__main__":
    main(prog="train.py")
