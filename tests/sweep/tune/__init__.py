"""Tests of sweep.tune: the Optuna searcher, confirm candidates, the driver callback, storage."""
