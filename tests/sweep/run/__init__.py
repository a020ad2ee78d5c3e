"""Tests of sweep.run: the Optuna searcher, confirm candidates, the driver callback, storage."""
