"""Prometheus metrics of `gateway serve`: the figures, and their exporter."""
