"""experiments/study_runner/report.py: the tables' percentages round half up from their
exact value, as the package's reports (``dard_plugin.evaluation.report.percent``) do."""

from __future__ import annotations

import sys

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "experiments"))


def test_table_percentages_round_half_up_from_their_exact_value() -> None:
    """1,163 of 2,000 validation images (58.15 %) was shown 58.1 and the mean of two seeds
    at 81.2 % and 81.3 % was 81.2: ``100 * 0.5815`` is 58.149999... in binary, which
    ``f"{x:.1f}"`` rounds down; a 1.05-point gap already went up (``half_up``)."""
    from study_runner.report import mean_spread, pct

    assert pct(1163 / 2000) == "58.2"
    assert pct(205 / 2000) == "10.3"  # 10.25 was 10.2
    assert pct(0.14375) == "14.4"
    assert pct(None) == "—"
    assert mean_spread([0.812, 0.813]) == "81.3 ± 0.1"  # the mean 81.25 was 81.2
    assert mean_spread([0.8125]) == "81.3 (1 seed)"
    assert mean_spread([]) == "—"
