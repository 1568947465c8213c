"""``/docs`` works without the internet: every script, style sheet and icon the page loads is
served by the API itself (FastAPI's default page fetches Swagger UI from a public CDN, so the
docs were blank on an offline machine)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit


def test_docs_page_loads_every_asset_from_this_server(env):
    page = env.client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
    refs += re.findall(r"""url:\s*['"]([^'"]+)['"]""", page.text)  # the spec Swagger UI fetches
    assert refs, page.text
    for ref in refs:
        parts = urlsplit(ref)
        assert not parts.scheme and not parts.netloc, f"/docs loads {ref} from another host"
    scripts = [r for r in refs if r.endswith(".js")]
    styles = [r for r in refs if r.endswith(".css")]
    assert scripts and styles, refs
    for ref in scripts + styles:
        asset = env.client.get(ref)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 10_000, f"{ref} is not the real Swagger UI asset"
    assert "SwaggerUIBundle" in env.client.get(scripts[0]).text
    assert env.client.get("/openapi.json").json()["openapi"].startswith("3.")


def test_the_docs_page_is_not_listed_in_the_api_schema(env):
    spec = env.client.get("/openapi.json").json()
    assert not any(p.startswith("/docs") for p in spec["paths"])
