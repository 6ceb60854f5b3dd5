"""Offline evaluation: full-ranking metrics, evaluation of methods and runs, tuning, result tables and
plots, run comparisons."""
