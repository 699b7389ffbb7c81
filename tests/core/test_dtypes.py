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
