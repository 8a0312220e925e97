"""The daemon's HTTP face: health, Prometheus metrics, in the daemon's own event loop."""
