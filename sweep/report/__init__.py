"""Self-contained HTML report of one study: verdict, claims, plots, failures.

``build_report(study_dir, out=None, partial=False) -> Path`` is the entry point (used by the
CLI's ``report`` command and at the end of ``run``); it renders the study's
:class:`~sweep.analysis.study.StudyAnalysis` and computes nothing itself.
"""

from __future__ import annotations

from sweep.report.sections import build_content, build_report

__all__ = ["build_content", "build_report"]
