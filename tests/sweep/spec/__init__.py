"""Tests of sweep.spec: study files, their schema, YAML locations and checks."""
