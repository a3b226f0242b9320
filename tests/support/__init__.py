"""Helpers shared by the tests only (the lab that benchmarks share lives in lab/)."""
