"""Deployment: the inference graph (``DepthGraph``), its export to ONNX, TorchScript and ``torch.export``, the
readers of exported files, and metric depth from the camera's height (metric/)."""
