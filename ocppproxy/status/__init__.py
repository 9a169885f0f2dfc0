"""Status over HTTP: what the proxy sees, as an HTML page, JSON and Prometheus metrics."""
