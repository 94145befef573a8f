"""The REST API (FastAPI) and the search page. Needs the ``api`` extra."""
