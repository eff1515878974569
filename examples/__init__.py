"""Worked examples for latbench users (not part of the installed package)."""
