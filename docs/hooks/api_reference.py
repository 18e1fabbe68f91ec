"""A MkDocs hook: the API reference page (`docs/reference.md`) rendered from the OpenAPI
document the API serves (`tracker.api.app.api_document`), at each build, so the page and
`GET /openapi.json` cannot drift. Offline: it reads the document in-process."""

from __future__ import annotations

import json
from typing import Any

from tracker.api.app import api_document

PAGE = "reference.md"
METHODS = ("get", "post", "put", "delete")
REF = "#/components/schemas/"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    return markdown.rstrip() + "\n\n" + render(api_document())


def render(document: dict[str, Any]) -> str:
    """Every route of `document`: what it does, its parameters, its body and its answers;
    then every schema it names, as JSON Schema."""
    lines: list[str] = []
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method not in item:
                continue
            operation = item[method]
            lines += [f"## `{method.upper()} {path}`", "", operation.get("summary", ""), ""]
            if operation.get("description"):
                lines += [operation["description"], ""]
            if "security" in operation:
                lines += ["Needs `Authorization: Bearer <api key>`.", ""]
            parameters = [*shared, *operation.get("parameters", [])]
            if parameters:
                lines += ["| parameter | in | required | schema | description |",
                          "|---|---|---|---|---|"]  # fmt: skip
                for p in parameters:
                    lines.append(
                        f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} "
                        f"| {_schema(p.get('schema', {}))} | {_cell(p.get('description', ''))} |"
                    )
                lines.append("")
            body = operation.get("requestBody")
            if body:
                schema = body["content"]["application/json"]["schema"]
                lines += [f"Body (JSON): {_schema(schema)}.", ""]
            lines += ["| answer | description | body |", "|---|---|---|"]
            for status, answer in operation["responses"].items():
                content = answer.get("content", {})
                schema = next(iter(content.values()), {}).get("schema") if content else None
                shown = _schema(schema) if schema else ""
                lines.append(f"| {status} | {_cell(answer.get('description', ''))} | {shown} |")
            lines.append("")
    lines += ["## Schemas", ""]
    for name, schema in document["components"]["schemas"].items():
        lines += [f"### {name}", "", "```json", json.dumps(schema, indent=2), "```", ""]
    return "\n".join(lines)


def _schema(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF)
        return f"[{name}](#{name.lower()})"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    text = json.dumps(schema)
    return f"`{text}`" if len(text) <= 80 else "`object` (see the schema)"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
