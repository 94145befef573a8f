"""One module per resource; :data:`ROUTERS` lists the routers the app mounts."""

from __future__ import annotations

from semsearch.search_api.routes import documents, health, images, ops, search, stats

ROUTERS = [health.router, images.router, search.router, documents.router, stats.router, ops.router]
