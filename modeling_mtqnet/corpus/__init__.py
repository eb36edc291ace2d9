"""Corpus wing: clean speech (`tts` synthesises it), signal measures and procedural noises (`signals`), enhancement
systems and codecs (`systems`), and the builder of noisy / enhanced / coded versions with aligned clean references
and a manifest (`builder`, `mtqnet corpus`)."""
