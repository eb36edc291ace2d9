#!/usr/bin/env python
"""Upload a trained MTQ-Net folder to the Hugging Face Hub with its model card: the same command as `mtqnet push`
(see `python push_to_hub.py --help`). The code is `modeling_mtqnet/sharing/push.py`."""

import sys

from modeling_mtqnet.cli import run_command

if __name__ == "__main__":
    debug = sys.argv[1:2] == ["--debug"]
    sys.exit(run_command("push", sys.argv[2 if debug else 1:], prog="push_to_hub.py", debug=debug))
