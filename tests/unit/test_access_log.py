"""``reflow serve`` keeps uvicorn's access log only at a level that keeps its lines
(INFO and below, and uvicorn's own ``trace``): above that, uvicorn formed each line's
arguments for every request and the level dropped them."""

from __future__ import annotations

import pytest

from reflow.api.workers import access_log


@pytest.mark.parametrize(("level", "kept"), [
    ("trace", True), ("debug", True), ("info", True), ("INFO", True),
    ("warning", False), ("WARNING", False), ("error", False), ("critical", False),
])
def test_access_log_only_where_its_lines_are_kept(level: str, kept: bool) -> None:
    assert access_log(level) is kept
