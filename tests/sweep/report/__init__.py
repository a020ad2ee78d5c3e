"""Tests of sweep.report: aggregation, claims, the built page, figures, comparisons."""
