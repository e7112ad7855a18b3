"""`python -m benchmarks`: the same as `python benchmarks/run.py`."""

from benchmarks.cli import command_line

command_line()
