"""weightmap's ONNX adapter: initializers grouped into layers by the nodes that use them.

Tensor bytes stay where they are: inline ones in the parsed proto, external ones memory-mapped
from their file (which must lie inside the model's folder).
"""
from .adapter import ADAPTER, OnnxAdapter

__all__ = ["ADAPTER", "OnnxAdapter"]
