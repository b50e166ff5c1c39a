"""(filled in below)"""

from __future__ import annotations

from fastapi import APIRouter

from reflow.console.deps import ConsoleRoute

router = APIRouter(route_class=ConsoleRoute)
