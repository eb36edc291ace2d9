"""The model wing: exactly the files a saved MTQ-Net folder carries (`CODE_FILES`), importing nothing outside this
folder, so that a folder on the Hub loads with `trust_remote_code=True` where this package is not installed."""
