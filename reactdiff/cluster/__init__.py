"""What runs inside cluster jobs (importable, so submitit can pickle it): training, eval tasks, aggregation."""
