"""The admin's styles and Swagger UI's assets from a real uvicorn process with DEBUG off, as docker
compose's web command serves them (WhiteNoise, assets from drf-spectacular-sidecar: nothing from a
CDN)."""

import re
import urllib.request

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "serving-test-secret-key-long-enough-0123456789",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
}


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def test_the_admin_is_styled_and_swagger_ui_loads_its_assets_with_debug_off(asgi_server):
    server = asgi_server(env=PRODUCTION)

    status, content_type, css = fetch(f"{server.url}/static/admin/css/base.css")
    assert (status, content_type.split(";")[0]) == (200, "text/css") and b"body" in css
    status, _, login = fetch(f"{server.url}/admin/login/")
    assert status == 200 and b"/static/admin/css/base.css" in login
    status, _, docs = fetch(f"{server.url}/api/docs")
    head = docs.decode().split("<body")[0]
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', docs.decode())
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets) and "https://" not in head
    for asset in assets:
        status, _, body = fetch(f"{server.url}{asset}")
        assert status == 200 and body, asset
