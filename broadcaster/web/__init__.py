"""The web page at ``/`` (``routes.router``), mounted beside the API by ``broadcaster.asgi`` so both share one Runtime."""
