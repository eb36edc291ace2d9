"""Tools wing: scoring a corpus (`score`), ONNX export (`export_onnx`) and the end-to-end demo (`demo`)."""
