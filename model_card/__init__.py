"""The Hub model card of a trained MTQ-Net folder: `render_card(model_dir, CardOptions(repo_id=...))`."""

from .render import CardOptions, render_card

__all__ = ["CardOptions", "render_card"]
