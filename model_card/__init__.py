"""The Hub model card of a trained MTQ-Net folder. It lives in the package (`modeling_mtqnet.sharing.model_card`,
template `model_card_template.md` beside it) so that an installed `mtqnet push` can render it; this folder keeps
`from model_card import render_card` working for scripts in a checkout."""

from modeling_mtqnet.sharing.model_card import CardOptions, render_card

__all__ = ["CardOptions", "render_card"]
