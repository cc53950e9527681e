"""The HTTP server: FastAPI app, routes, request batching, telemetry and the web page."""
