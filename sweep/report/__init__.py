"""Self-contained HTML report of one study: verdict, claims, plots, failures.

``build_report(study_dir, out=None, partial=False) -> Path`` is the entry point (used by the
CLI's ``report`` command and at the end of ``run``).
"""

from __future__ import annotations

from sweep.report.build import build_content, build_report
from sweep.report.data import NotAStudyFolderError, load_study_data

__all__ = ["NotAStudyFolderError", "build_content", "build_report", "load_study_data"]
