"""The manual (issue 27, in part): the README links only to pages that exist, and the docs
site builds with --strict (a broken link or an unlisted page fails) into pages that fetch
nothing from elsewhere, so it reads offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tracker.api.app import api_document

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_links_to_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(((?:docs/)[^)#]+)", readme)
    assert len(targets) >= 10
    for target in targets:
        assert (ROOT / target).is_file(), target
    assert len(readme.splitlines()) <= 150


def test_the_site_builds_strictly_and_fetches_nothing_from_elsewhere(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    built = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    pages = list(tmp_path.rglob("*.html"))
    assert len(pages) >= 13
    fetched = re.compile(r"<(?:script|img|link)\b[^>]*(?:src|href)=\"(?:https?:)?//", re.I)
    for page in pages:
        text = page.read_text()
        assert not fetched.search(text), page  # no fonts, scripts or styles from elsewhere
    settings = (tmp_path / "settings" / "index.html").read_text()
    assert "REDIS_URL" in settings and "TRACKER_ARQ_REDIS_URL" in settings
    # The API reference, rendered from the document the API serves: every route, every schema.
    reference = (tmp_path / "reference" / "index.html").read_text()
    document = api_document()
    for path, item in document["paths"].items():
        for method in set(item) - {"parameters"}:
            assert f"<code>{method.upper()} {path}</code>" in reference, (method, path)
    for name in document["components"]["schemas"]:
        assert f'id="{name.lower()}"' in reference, name
