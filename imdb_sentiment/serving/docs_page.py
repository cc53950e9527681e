"""``/docs``: the API reference as one self-contained HTML page, rendered from the OpenAPI schema.

FastAPI's Swagger UI loads its scripts and styles from a CDN, so behind a firewall or offline it
is a blank page. This page needs nothing outside the server: every route with its summary,
description, parameters, request body (schema and examples) and answers, from ``/openapi.json``.
The interactive page at ``/`` calls ``POST /predict``.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

_STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1f2328; background: #f6f8fa; }
main { max-width: 900px; margin: 2rem auto; padding: 0 1rem; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: .5rem 1rem;
          margin: 1rem 0; }
.method { font-weight: 700; text-transform: uppercase; margin-right: .5rem; color: #0969da; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
pre { background: #f6f8fa; padding: .5rem; border-radius: 6px; overflow-x: auto; }
table { border-collapse: collapse; } td, th { padding: .2rem .8rem .2rem 0; text-align: left; }
.muted { color: #57606a; }
"""


def _json(value: Any) -> str:
    return escape(json.dumps(value, indent=2, ensure_ascii=False))


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        resolved: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        return resolved
    return schema


def _operation(path: str, method: str, op: dict[str, Any], spec: dict[str, Any]) -> str:
    parts = [
        f'<section><h3><span class="method">{escape(method)}</span>'
        f"<code>{escape(path)}</code> {escape(op.get('summary', ''))}</h3>"
    ]
    if op.get("description"):
        parts.append(f"<p>{escape(op['description'])}</p>")
    params = [p for p in op.get("parameters", []) if isinstance(p, dict)]
    if params:
        rows = "".join(
            f"<tr><td><code>{escape(p.get('name', ''))}</code></td>"
            f"<td>{escape(p.get('in', ''))}</td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>"
            for p in params
        )
        parts.append(f"<h4>Parameters</h4><table>{rows}</table>")
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        schema = _resolve(body.get("schema", {}), spec)
        parts.append(
            "<h4>Request body (<code>Content-Type: application/json</code>)</h4>"
            f"<pre>{_json(schema)}</pre>"
        )
    responses = op.get("responses", {})
    if responses:
        rows = "".join(
            f"<tr><td><code>{escape(str(code))}</code></td>"
            f"<td>{escape(r.get('description', ''))}</td></tr>"
            for code, r in responses.items()
        )
        parts.append(f"<h4>Answers</h4><table>{rows}</table>")
    return "".join(parts) + "</section>"


def docs_html(spec: dict[str, Any]) -> str:
    """The reference page for an OpenAPI ``spec`` (what ``app.openapi()`` returns)."""
    info = spec.get("info", {})
    title = f"{info.get('title', 'API')} {info.get('version', '')}".strip()
    sections = [
        _operation(path, method, op, spec)
        for path, methods in spec.get("paths", {}).items()
        for method, op in methods.items()
        if isinstance(op, dict)
    ]
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} '
        f"API</title><style>{_STYLE}</style></head><body><main><h1>{escape(title)} API</h1>"
        f"<p>{escape(info.get('description', ''))}</p>"
        '<p class="muted">The machine-readable schema is at <a href="/openapi.json">'
        "/openapi.json</a> (load it into any OpenAPI tool); try a review on "
        '<a href="/">the web page</a>.</p>'
        f"{''.join(sections)}</main></body></html>"
    )
