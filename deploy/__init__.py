"""Deployment: the inference graph (``DepthGraph``), its export to ONNX, TorchScript and ``torch.export``, and
the readers of exported files."""
