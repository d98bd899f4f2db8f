"""Self-contained HTML audit reports (issue 30): ``python -m miabench.report``."""
