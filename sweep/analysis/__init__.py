"""The read side's one analysis layer: the only code that opens a study folder for an output
and the only code that computes a statistic of a study.

    study folder -> load (StudyData, read once) -> StudyAnalysis (convergence judged once,
    trials ranked once, verdict, claims, leaderboards, grid summaries) -> renderers

Renderers (the HTML report, ``export``, the CLI's tables, ``compare``) take a
:class:`~sweep.analysis.study.StudyAnalysis` and format what it holds with
:mod:`sweep.analysis.formatting`; they never read Parquet or compute a mean, an interval or a
test. This package imports no renderer (checked by import-linter, see pyproject.toml).

Submodules are imported by name (``from sweep.analysis.study import analyse_study``): the
study spec imports :mod:`sweep.analysis.convergence`'s defaults, so this package's own import
stays free of pandas and SciPy.
"""
