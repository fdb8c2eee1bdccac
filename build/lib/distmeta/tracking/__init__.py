"""MLflow: store addresses, metric names, and what a run records."""
