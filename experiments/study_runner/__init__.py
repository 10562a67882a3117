"""A small runner for studies made of units (issue 23).

A study is a definition: a function that returns its plan (a list of :class:`Unit`, each a
kind, a name, an estimate of its minutes and the function that does its work) and a function
that writes its report from the unit files. The runner does the rest, the same way for every
study:

- ``store``: one JSON file per finished unit (``<out>/<kind>-<name>.json``), written
  atomically, with the command that reruns exactly that unit alone (files written before
  ``--only`` existed, most of the study's, record their phase's command instead:
  ``execute.file_rerun_command`` derives the unit's from it), the device, the seconds
  and the provenance (``provenance``: git commit and dirty flag, package versions, machine
  with its CPU model or GPU name); lock files in ``<work>``, held with ``flock`` (the
  system releases them when their process ends), so that several processes running the
  same plan share its units;
- ``execute``: resumable execution one unit at a time, re-planning after each unit (a
  finished unit can make later units known), and the command line every definition shares
  (``plan | run | report``, ``--only``, ``--out``, ``--work``, ``--device``, ``--threads``);
- ``report``: the numbers' formatting, the seed statistics and the rule that calls a
  difference, the generated part of a markdown file between markers, and the plots.

A unit named with ``--only`` that is already finished in ``--out`` is run again and its new
JSON written to ``<work>/rerun/``: a rerun never overwrites a committed result. Its work
(training folder, resumable evaluation state) is in ``<work>/rerun/`` too
(``ResultStore.work_path``), so that it trains and attacks again, as on a fresh clone,
instead of finding the committed unit's finished student. A test unit evaluates a finished
student only where its train unit recorded the run's current settings
(``ResultStore.trained_student``): one trained with others is refused, not evaluated.
"""

from __future__ import annotations

from study_runner.execute import Runner, Unit, add_arguments, main_for
from study_runner.provenance import REPO, command_line, provenance
from study_runner.store import ResultStore

__all__ = [
    "REPO",
    "ResultStore",
    "Runner",
    "Unit",
    "add_arguments",
    "command_line",
    "main_for",
    "provenance",
]
