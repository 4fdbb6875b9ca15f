"""/docs and /redoc load every asset from the service itself (they work without internet)."""

from __future__ import annotations

import re

import pytest

ASSET_RE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|(?:url|Url)\s*:\s*["']([^"']+)["']""")


def _refs(html: str) -> list[str]:
    return [a or b for a, b in ASSET_RE.findall(html)]


@pytest.mark.parametrize("page, expected", [
    ("/docs", {"/static/swagger-ui/swagger-ui-bundle.js", "/static/swagger-ui/swagger-ui.css",
               "/static/swagger-ui/favicon-32x32.png", "/openapi.json"}),
    ("/redoc", {"/static/redoc/redoc.standalone.js", "/static/swagger-ui/favicon-32x32.png", "/openapi.json"}),
])
def test_docs_pages_reference_only_local_assets_that_answer(client, page, expected):
    r = client.get(page)
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert not re.search(r"https?://", r.text), re.findall(r"https?://[^\s\"']+", r.text)
    refs = set(_refs(r.text))
    assert expected <= refs, refs
    for ref in refs:
        assert ref.startswith("/"), ref
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 0


def test_vendored_assets_have_their_types_and_bodies(client):
    js = client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert js.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert b"SwaggerUIBundle" in js.content
    css = client.get("/static/swagger-ui/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css")
    redoc = client.get("/static/redoc/redoc.standalone.js")
    assert b"Redoc" in redoc.content
    assert client.get("/docs/oauth2-redirect").status_code == 200
    r = client.get("/static/nothing-here.js")
    assert r.status_code == 404


def test_docs_need_no_api_key(tmp_path):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    keys = tmp_path / "keys.txt"
    keys.write_text("team-a:key-a-0123456789abcdef\n")
    app = create_app(Settings(data_dir=tmp_path / "data", workers=0, api_keys_file=str(keys)))
    with TestClient(app) as c:
        assert c.get("/v1/models").status_code == 401
        for path in ("/docs", "/redoc", "/openapi.json", "/static/redoc/redoc.standalone.js"):
            assert c.get(path).status_code == 200, path


def test_event_stream_is_documented_as_text_event_stream(client):
    op = client.get("/openapi.json").json()["paths"]["/v1/jobs/{job_id}/events"]["get"]
    content = op["responses"]["200"]["content"]
    assert list(content) == ["text/event-stream"]
    assert "event: epoch" in content["text/event-stream"]["example"]


BINARY_MEDIA = ("application/octet-stream", "application/x-npy", "application/vnd.apache.arrow.stream")


def test_every_schema_field_has_a_description_and_every_json_answer_an_example(client):
    doc = client.get("/openapi.json").json()
    comps = doc["components"]["schemas"]
    undescribed = [f"{name}.{field}" for name, sch in comps.items()
                   for field, prop in sch.get("properties", {}).items() if "description" not in prop]
    assert undescribed == []
    without = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for code, answer in op["responses"].items():
                for media, content in answer.get("content", {}).items():
                    if media in BINARY_MEDIA:
                        assert content["schema"].get("description"), (method, path, code, media)
                        continue
                    ref = content.get("schema", {}).get("$ref")
                    if not ("example" in content or "examples" in content
                            or (ref and "examples" in comps[ref.rsplit("/", 1)[-1]])):
                        without.append(f"{method.upper()} {path} {code} {media}")
    assert without == []
    assert all("422" not in op["responses"] for p, ops in doc["paths"].items() if p.startswith("/v2")
               for op in ops.values())
