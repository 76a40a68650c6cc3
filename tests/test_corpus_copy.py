"""tests/corpus is the shared third-party corpus, byte for byte (its expected.json has each sha256)."""

from __future__ import annotations

import hashlib
import json

from conftest import CORPUS


def test_corpus_files_are_the_upstream_bytes() -> None:
    files = json.loads((CORPUS / "expected.json").read_text())["files"]
    checked = 0
    for name, facts in files.items():
        if "(with" in name:
            continue
        digest = hashlib.sha256((CORPUS / name).read_bytes()).hexdigest()
        assert digest == facts["sha256"], name
        checked += 1
    assert checked == 21
