"""Scoring wing: what the commands that score share: a saved model loaded for scoring (`loading`) and the
frame-curve pictures drawn in bounded memory however long the clip (`frame_plots`)."""
