"""Tools built on the other tiers: `bench` (eager PyTorch against ONNX Runtime), `quantize` (INT8),
`view` (netron on 127.0.0.1)."""
