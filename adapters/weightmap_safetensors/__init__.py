"""weightmap's safetensors adapter: single files, index files and shard folders.

Reads headers only (own parser, strictly validated); tensor bytes are memory-mapped on demand.
"""
from .adapter import ADAPTER, SafetensorsAdapter

__all__ = ["ADAPTER", "SafetensorsAdapter"]
