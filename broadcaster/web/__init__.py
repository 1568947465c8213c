"""The web page at ``/`` (``routes.router``), included by the API app so both share one Runtime."""
