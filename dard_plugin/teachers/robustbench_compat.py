"""Importing robustbench 1.1.1 on a fresh install, without manual steps.

Two problems, each handled here and nowhere else:

* ``robustbench/eval.py`` runs ``from autoattack import AutoAttack`` and
  ``from autoattack.state import EvaluationState`` at import time, but the original
  AutoAttack is not on PyPI under the name ``autoattack``. ``pyautoattack`` is that same code
  under another name. If (and only if) no ``autoattack`` module is importable, the two
  names are aliased to ``pyautoattack`` in ``sys.modules`` *for the duration of the import*
  and removed again afterwards: other programs keep their own view of ``autoattack``
  (still absent, or their own installation, which is then used untouched). Only
  robustbench's ``benchmark()`` sees pyautoattack's class; this package never calls it.
* ``robustbench/loaders.py`` imports ``pkg_resources``, which setuptools 82 removed: the
  project requires ``setuptools<82``, and the import's deprecation warnings are silenced.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType


@contextlib.contextmanager
def _autoattack_alias() -> Iterator[None]:
    if importlib.util.find_spec("autoattack") is not None:
        yield
        return
    import pyautoattack
    import pyautoattack.state

    aliases = {"autoattack": pyautoattack, "autoattack.state": pyautoattack.state}
    added = [name for name in aliases if name not in sys.modules]
    for name in added:
        sys.modules[name] = aliases[name]
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def import_robustbench_utils() -> ModuleType:
    """``robustbench.utils``, imported as described in this module's docstring."""
    if "robustbench.utils" in sys.modules:
        return sys.modules["robustbench.utils"]
    with _autoattack_alias(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pkg_resources.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        return importlib.import_module("robustbench.utils")


def robustbench_zoo() -> dict[str, dict[str, list[str]]]:
    """Model names in the installed robustbench: ``{dataset: {threat_model: [names]}}``."""
    import_robustbench_utils()
    from robustbench.model_zoo import model_dicts

    return {
        dataset.value: {threat.value: list(models) for threat, models in by_threat.items()}
        for dataset, by_threat in model_dicts.items()
    }
