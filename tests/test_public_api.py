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


def test_loading_and_evaluating_models_does_not_import_the_trainers() -> None:
    """`dard evaluate` and `dard attack` load models through ``recipes``; its ``distill``
    (trainers, ART: half of a command's start-up here) loads on first use only."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from dard_plugin.recipes import load_model, default_eps\n"
        "import dard_plugin.evaluation\n"
        "assert 'art' not in sys.modules and 'dard_plugin.training.loop' not in sys.modules\n"
        "from dard_plugin.recipes import distill, DistillationResult, plot_history\n"
        "assert distill.__module__ == 'dard_plugin.recipes.distillation'\n"
        "assert 'dard_plugin.training.loop' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_citation_file_names_the_installed_version_and_license() -> None:
    """CITATION.cff is what GitHub's "Cite this repository" reads: a release that bumps the
    version in pyproject.toml must bump it there too."""
    import importlib.metadata
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "CITATION.cff").read_text()
    fields = dict(re.findall(r"^(version|license|cff-version): (\S+)$", text, flags=re.M))
    metadata = importlib.metadata.metadata("dard-plugin")
    assert fields["version"] == dard_plugin.__version__ == metadata["Version"]
    assert fields["license"] == metadata["License-Expression"] == "MIT"
    assert fields["cff-version"] == "1.2.0"
    assert "arXiv:2509.11525" in text
