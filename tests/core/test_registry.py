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


def test_leaf_aliases_come_from_the_conventions_and_must_agree(monkeypatch):
    from weightmap.convention import Convention

    assert registry.leaf_aliases()["moving_variance"] == "running_var"    # Keras' words

    class One(Convention):
        name, leaf_aliases = "one", {"w": "weight"}

    class Two(Convention):
        name, leaf_aliases = "two", {"w": "bias"}

    monkeypatch.setattr(registry, "conventions", lambda: {"one": One(), "two": Two()})
    registry.leaf_aliases.cache_clear()
    try:
        with pytest.raises(AdapterRegistryError, match="leaf name 'w' means 'weight'"):
            registry.leaf_aliases()
    finally:
        registry.leaf_aliases.cache_clear()
