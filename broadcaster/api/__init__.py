"""HTTP API: ``create_app(settings, runtime=None)`` builds the FastAPI application."""
