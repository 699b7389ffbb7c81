import pytest

from weightmap import registry
from weightmap.errors import AdapterRegistryError


def test_builtin_adapters_load_and_name_themselves():
    table = registry.adapters()
    assert set(registry.BUILTIN) <= set(table)
    for name, adapter in table.items():
        assert adapter.name == name


def test_a_name_registered_twice_is_an_error():
    with pytest.raises(AdapterRegistryError, match="registered twice"):
        registry.build({"torch": registry.BUILTIN["torch"]}, [("torch", registry.BUILTIN["torch"])])


def test_an_adapter_must_carry_its_registered_name():
    with pytest.raises(AdapterRegistryError, match="calls itself"):
        registry.build({"keras": registry.BUILTIN["torch"]}, [])


def test_unknown_adapter_lists_known_ones():
    with pytest.raises(AdapterRegistryError, match="known: "):
        registry.get("caffe")
