"""SentiOps KServe predictor: `python -m serving --model_name sentiment --model_dir /mnt/models`.

A small runtime in the style of KServe's own `python/sklearnserver`: `model.py` holds one
`kserve.Model` over the core's `load_model()` / prediction, `__main__.py` parses KServe's flags
plus ours and starts `kserve.ModelServer` (REST v1 + v2 Open Inference Protocol, gRPC v2).
"""
