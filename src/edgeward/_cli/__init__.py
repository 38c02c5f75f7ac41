"""Internals of the ``edgeward`` command: one module per command group.

:mod:`edgeward.cli` owns the root group, the error handling and the exit codes; each module
here defines one group (or command) that it registers there. Every command parses its options,
calls one library function and hands the result object to :func:`emit`.
"""
