#!/usr/bin/env python
"""Upload a trained MTQ-Net folder to the Hugging Face Hub with its model card: the same command as `mtqnet push`
(see `python push_to_hub.py --help`). The code is `modeling_mtqnet/sharing/push.py`."""

import sys

from modeling_mtqnet.sharing.push import main

if __name__ == "__main__":
    sys.exit(main(prog="push_to_hub.py"))
