"""HTTP API: ``app.create_api(settings, runtime=None, mounts=())`` builds the FastAPI application
(``broadcaster.asgi`` composes it with the web page)."""
