"""Every top-level name resolves lazily, to the object its module defines."""

from __future__ import annotations

import importlib

import dard_plugin


def test_every_public_name_resolves_to_its_module_object() -> None:
    for name in dard_plugin.__all__:
        if name == "__version__":
            continue
        module_name, attribute = dard_plugin._LAZY[name]
        module = importlib.import_module(module_name)
        expected = module if attribute is None else getattr(module, attribute)
        assert getattr(dard_plugin, name) is expected


def test_l2_faces_are_top_level() -> None:
    from dard_plugin.attacks import DPGDL2, dpgd_l2

    assert dard_plugin.DPGDL2 is DPGDL2 and dard_plugin.dpgd_l2 is dpgd_l2
