"""`schedtop exporter`: the snapshots the TUI shows, served to Prometheus on /metrics."""
