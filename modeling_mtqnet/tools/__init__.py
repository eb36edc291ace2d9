"""Tools wing: scoring a corpus (`score`), ONNX export (`export_onnx`), the end-to-end demo (`demo`) and the web app
(`app`)."""
