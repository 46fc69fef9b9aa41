"""CUDA tests: run on a machine with an NVIDIA GPU; everywhere else they are collected and skipped."""
