"""torch's names for storages and dtypes, as data (nothing here imports torch)."""
from __future__ import annotations

# Legacy typed storage classes (``torch.FloatStorage`` ...) → canonical dtype.
STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
}

# ``torch.<name>`` dtype objects → canonical dtype; None where weightmap has no numpy twin.
TORCH_DTYPES: dict[str, str | None] = {
    "float64": "float64", "double": "float64", "float32": "float32", "float": "float32",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16",
    "int64": "int64", "long": "int64", "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool",
    "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "complex64": "complex64", "cfloat": "complex64",
    "complex128": "complex128", "cdouble": "complex128",
    "float8_e4m3fn": "float8_e4m3fn", "float8_e4m3fnuz": "float8_e4m3fnuz",
    "float8_e5m2": "float8_e5m2", "float8_e5m2fnuz": "float8_e5m2fnuz",
    "complex32": None, "chalf": None, "float8_e8m0fnu": None, "float4_e2m1fn_x2": None,
    "bits8": None, "bits16": None, "bits1x8": None, "bits2x4": None, "bits4x2": None,
    **{f"uint{n}": None for n in range(1, 8)}, **{f"int{n}": None for n in range(1, 8)},
}

# torch globals that are harmless but describe tensors weightmap does not read.
UNSUPPORTED_GLOBALS = {
    "torch._utils._rebuild_qtensor": "quantized tensors",
    "torch._utils._rebuild_sparse_tensor": "sparse tensors",
    "torch._utils._rebuild_sparse_csr_tensor": "sparse tensors",
    "torch.serialization._get_layout": "sparse tensor layouts",
    "torch._utils._rebuild_nested_tensor": "nested tensors",
    "torch._utils._rebuild_wrapper_subclass": "tensor subclasses",
    "torch._utils._rebuild_meta_tensor_no_storage": "meta tensors (shapes without data)",
    "torch._utils._rebuild_device_tensor_from_numpy": "tensors stored as numpy arrays",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": "device tensors",
    "torch._utils._rebuild_xla_tensor": "XLA tensors",
    **{f"{m}.{q}": "quantized storages" for m in ("torch", "torch.cuda")
       for q in ("QInt8Storage", "QInt32Storage", "QUInt8Storage", "QUInt4x2Storage",
                 "QUInt2x4Storage")},
    **{f"torch.{q}": "quantization schemes" for q in (
        "per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
        "per_channel_symmetric", "per_channel_affine_float_qparams")},
    **{f"torch.{q}": "quantized dtypes" for q in ("qint8", "quint8", "qint32", "quint4x2",
                                                  "quint2x4")},
}
