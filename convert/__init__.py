"""resflex.convert — turn a trained checkpoint into a mobile bundle (ExecuTorch, Core ML, TFLite, ONNX)."""
