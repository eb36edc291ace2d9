"""Tools wing: commands of `mtqnet`, and nothing else (what two of them share lives in a wing below): scoring a corpus
(`score`), ONNX export (`export_onnx`), the end-to-end demo (`demo`), the web app (`app`), the rebuild of a shipped
model (`build_pretrained`) and of the Distill-MOS encoder folder (`build_encoder`)."""
