"""weightmap's Keras adapter: Keras 2 legacy HDF5 (full models and weights-only), Keras 3
``.weights.h5`` and ``.keras`` files, and live Keras models (keras 3 and tf_keras).

Files are read with h5py / zipfile / json: importing this package (or reading a file) imports no
TensorFlow and no Keras, and nothing in a file is ever executed.
"""
from .adapter import ADAPTER, KerasAdapter

__all__ = ["ADAPTER", "KerasAdapter"]
