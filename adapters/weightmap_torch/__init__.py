"""weightmap's torch adapter: .pt/.pth/.bin/.ckpt checkpoints read without torch (restricted
unpickler, memory-mapped storages), and live torch modules / state dicts read through torch."""
from .adapter import ADAPTER, TorchAdapter

__all__ = ["ADAPTER", "TorchAdapter"]
