"""Sharing wing: what a trained folder must hold (`model_dir`), its Hub model card (`model_card`), the upload (`push`)."""
