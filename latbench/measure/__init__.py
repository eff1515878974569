"""Measuring devices: the end-to-end profiler and single-kernel sampling campaigns."""
