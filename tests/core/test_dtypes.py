import subprocess
import sys

import numpy as np
import pytest

from weightmap import dtypes
from weightmap.errors import FormatError


@pytest.mark.parametrize("name", sorted(dtypes.DTYPES))
def test_every_dtype_round_trips_by_name(name):
    assert dtypes.from_numpy(dtypes.to_numpy(name)) == name


def test_big_endian_maps_to_same_name():
    assert dtypes.from_numpy(np.dtype(">f4")) == "float32"


def test_unknown_dtypes_are_refused_with_the_known_list():
    with pytest.raises(FormatError, match="known: "):
        dtypes.to_numpy("float12")
    with pytest.raises(FormatError, match="unsupported dtype"):
        dtypes.from_numpy(np.dtype("datetime64[s]"))


def test_safetensors_codes_cover_the_main_types():
    for code in ("F32", "F16", "BF16", "I64", "BOOL", "F8_E4M3"):
        assert dtypes.SAFETENSORS[code] in dtypes.DTYPES


@pytest.mark.parametrize("name", sorted(dtypes.FLOAT_DTYPES))
def test_nonfinite_bit_patterns_agree_with_isfinite_on_every_value(name):
    npdt = dtypes.to_numpy(name)
    size = npdt.itemsize
    if size <= 2:       # every bit pattern of the dtype
        bits = np.arange(1 << (8 * size), dtype=f"<u{size}")
    else:               # the special values and random patterns around them
        rng = np.random.default_rng(0)
        info = np.finfo(npdt)
        special = np.array([np.inf, -np.inf, np.nan, -np.nan, 0, -0.0, info.max, info.min,
                            info.tiny, 1], dtype=npdt).view(f"<u{size}")
        bits = np.concatenate([special, rng.integers(0, 1 << (8 * size) - 1, 100_000,
                                                     dtype=f"<u{size}", endpoint=True)])
    values = bits.view(npdt)
    expected = int(values.size - np.count_nonzero(np.isfinite(values)))
    assert expected > 0
    assert dtypes.count_nonfinite(bits.tobytes(), name) == expected


def test_import_weightmap_loads_ml_dtypes_only_when_a_dtype_needs_it():
    # loading ml_dtypes' extension was most of ``import weightmap`` (0.45 s of 0.6 s)
    code = ("import sys, weightmap, weightmap.cli, weightmap.transform, weightmap.emit.readback\n"
            "from weightmap import dtypes\n"
            "assert 'ml_dtypes' not in sys.modules\n"
            "assert dtypes.itemsize('bfloat16') == 2 and 'bfloat16' in dtypes.FLOAT_DTYPES\n"
            "assert dtypes.count_nonfinite(b'\\x80\\x7f', 'bfloat16') == 1\n"
            "assert 'ml_dtypes' not in sys.modules\n"
            "import ml_dtypes\n"
            "assert dtypes.to_numpy('bfloat16') == ml_dtypes.bfloat16\n"
            "assert dtypes.from_numpy(ml_dtypes.float8_e5m2) == 'float8_e5m2'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_ml_dtypes_array_is_named_before_weightmap_loaded_ml_dtypes():
    code = ("import ml_dtypes, numpy as np\n"
            "from weightmap import dtypes\n"
            "assert dtypes.from_numpy(np.zeros(2, ml_dtypes.bfloat16).dtype) == 'bfloat16'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
