"""The JSON Schema editors use is generated from the same pydantic models the loader
validates with, and the committed copy under docs/ is the current one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflow.cli import main
from reflow.project.schema import json_schema_text

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reflow.schema.json"


def test_reflow_schema_prints_the_committed_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == json_schema_text()
    assert DOCS.read_text() == printed, "regenerate: reflow schema > docs/reflow.schema.json"
    schema = json.loads(printed)
    assert set(schema["properties"]) == {
        "version", "sources", "models", "segments", "destinations", "syncs"}
    mapping = schema["$defs"]["Mapping"]
    assert "from" in mapping["properties"] and "from_" not in mapping["properties"]
    assert schema["$defs"]["SyncSpec"]["additionalProperties"] is False
