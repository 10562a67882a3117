"""The one list of training methods: what each needs and where it comes from.

:func:`dard_plugin.recipes.distill`, ``dard distill --method``, the docs table and the
tests read :data:`METHODS`; adding a method is one class and one entry here. Importing this
module imports no torch (the command line builds its parser from it): a trainer class is
named by its import path and loaded on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dard_plugin.training.trainer import AdversarialTrainerBase

_CLASSIC = "dard_plugin.training.methods"
_RECENT = "dard_plugin.training.recent_methods"


@dataclass(frozen=True)
class MethodSpec:
    """A training method: its trainer class and the options that make it this method."""

    name: str
    trainer_path: str  # "module:Class"
    description: str
    source: str  # repository, file and commit the defaults were read from
    needs_teacher: bool = True
    needs_natural_teacher: bool = False
    # every teacher output depends on the student, so none can be cached (none of the
    # methods here: each caches what does not depend on the student and computes the rest
    # online, e.g. AdaAD's T(x') and MTARD's T_adv(x'))
    online_only: bool = False
    adversarial: bool = True  # trains on adversarial examples (all but natural training)
    options: Mapping[str, Any] = field(default_factory=dict)  # preset trainer options

    @property
    def trainer(self) -> type[AdversarialTrainerBase]:
        module, name = self.trainer_path.split(":")
        found: type[AdversarialTrainerBase] = getattr(importlib.import_module(module), name)
        return found

    @property
    def default_attack(self) -> str:
        return self.trainer.default_attack


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "sat",
            f"{_CLASSIC}:SATTrainer",
            "PGD adversarial training (Madry et al. 2018), no teacher",
            "Madry et al. 2018",
            needs_teacher=False,
        ),
        MethodSpec(
            "natural",
            f"{_CLASSIC}:NaturalTrainer",
            "standard training, CE(S(x), y): no attack, no teacher (trains natural teachers)",
            "dard-plugin (dard train-teacher --natural)",
            needs_teacher=False,
            adversarial=False,
        ),
        MethodSpec(
            "ard",
            f"{_CLASSIC}:ARDTrainer",
            "ARD (Goldblum et al. 2020): the teacher's clean soft labels on the student's "
            "PGD example",
            "goldblum/AdversariallyRobustDistillation",
        ),
        MethodSpec(
            "rslad",
            f"{_CLASSIC}:RSLADTrainer",
            "RSLAD (Zi et al. 2021): the teacher's clean soft labels everywhere",
            "zibojia/RSLAD",
        ),
        MethodSpec(
            "dard",
            f"{_CLASSIC}:DARDTrainer",
            "DARD: the teacher's outputs on its own DPGD examples, student attacked by DPGD",
            "METHOD.md",
        ),
        MethodSpec(
            "iad",
            f"{_RECENT}:IADTrainer",
            "IAD-I (Zhu et al. 2022): ARD plus introspection weighted by the teacher's "
            "reliability on the student's PGD example",
            "ZFancy/IAD IAD-I.py @ 2aaa20d6",
        ),
        MethodSpec(
            "adaad",
            f"{_RECENT}:AdaADTrainer",
            "AdaAD (Huang et al. 2023): inner maximisation of KL(T(x')||S(x')), queried "
            "at every attack step",
            "boyellow/AdaAD AT_helper.py, main.py @ fe97c3ef",
        ),
        MethodSpec(
            "adaad-igdm",
            f"{_RECENT}:AdaADTrainer",
            "AdaAD plus IGDM's input-gradient matching term (Lee et al. 2025)",
            "HongsinLee/saad igdm.py @ 93216733",
            options={"igdm": 1.0},
        ),
        MethodSpec(
            "mtard",
            f"{_RECENT}:MTARDTrainer",
            "MTARD (Zhao et al. 2022): an adversarial and a natural teacher with adaptive weights",
            "zhaoshiji123/MTARD mtard/mtard_resnet18_cifar10.py, mtard_loss.py @ a46fbc24",
            needs_natural_teacher=True,
        ),
    )
}


def method_spec(name: str) -> MethodSpec:
    """The entry of ``name``, with a clear error listing the methods."""
    if name not in METHODS:  # not _validation.check_choice: that module imports torch
        raise ValueError(f"method must be one of {list(METHODS)}, got {name!r}")
    return METHODS[name]


def build_trainer(
    name: str,
    student: Any,
    teacher: Any = None,
    *,
    natural_teacher: Any = None,
    **kwargs: Any,
) -> AdversarialTrainerBase:
    """The trainer of method ``name`` with its preset options (``kwargs`` override them);
    checks that the teachers it needs are given and those it does not are not."""
    spec = method_spec(name)
    if spec.needs_teacher and teacher is None:
        raise ValueError(f"method {name!r} needs a teacher")
    if not spec.needs_teacher and teacher is not None:
        raise ValueError(f"method {name!r} takes no teacher")
    if spec.needs_natural_teacher and natural_teacher is None:
        raise ValueError(f"method {name!r} needs natural_teacher (a naturally trained teacher)")
    if not spec.needs_natural_teacher and natural_teacher is not None:
        raise ValueError(f"method {name!r} takes no natural_teacher")
    if spec.online_only and kwargs.get("teacher_targets") == "cached":
        raise ValueError(f"method {name!r} needs teacher_targets='online'")
    for key, preset in spec.options.items():  # a preset switched off is another method
        if preset and key in kwargs and not kwargs[key]:
            raise ValueError(
                f"method {name!r} presets {key}={preset!r}; {key}={kwargs[key]!r} would "
                f"train another method under its name: drop {key} (or give it a nonzero "
                "value), or choose the method without it"
            )
    options = {**spec.options, **kwargs}
    if spec.needs_natural_teacher:
        options["natural_teacher"] = natural_teacher
    if spec.needs_teacher:
        return spec.trainer(student, teacher, **options)
    return spec.trainer(student, **options)
