"""A small client of the Census Management API over HTTP: the CLI changes a server only
through the API every other client uses, never through a second code path."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {message}")
        self.status, self.message = status, message


class Client:
    def __init__(self, url: str, token: str, *, transport: httpx.BaseTransport | None = None,
                 timeout: float = 60) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(method, path, 0, f"cannot reach {self.http.base_url}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:300]}
        if response.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else None
            raise ApiError(method, path, response.status_code, str(message or body))
        return body

    def data(self, method: str, path: str, **kwargs: Any) -> Any:
        body = self.request(method, path, **kwargs)
        return body.get("data", body) if isinstance(body, dict) else body

    def get(self, path: str, **params: Any) -> Any:
        return self.data("GET", path, params=params or None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.data("POST", path, json=body or {})

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.data("PATCH", path, json=body)

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self.data("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def list_all(self, path: str, **params: Any) -> list[Any]:
        """Every page of a listing, oldest first."""
        items: list[Any] = []
        page = 1
        while True:
            body = self.request(
                "GET", path, params={**params, "page": page, "per_page": 100, "order": "asc"}
            )
            items += body.get("data") or []
            next_page = (body.get("pagination") or {}).get("next_page")
            if not next_page:
                return items
            page = next_page
