"""Reading: an ONNX file to graph scopes and safe, lazy tensor sources (nothing is written, nothing outside the model's folder is read)."""
