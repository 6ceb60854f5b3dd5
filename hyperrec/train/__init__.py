"""Training, evaluation, tuning and reporting."""
