"""Tests of sweep.store: the Parquet results store, its part files and lock."""
