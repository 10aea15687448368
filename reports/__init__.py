"""Reports: read run directories and turn them into tables, plots, grids and verdicts.

Reads result files only (see docs/run-directory.md); never imports the model or samplers.
"""
