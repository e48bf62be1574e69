"""A recorded-response stand-in for a Kubernetes API server (no API server runs in these tests).

:class:`StubServer` replaces the HTTP layer of the official client (``ApiClient.rest_client``),
so every call goes through the client's real request building, serialization and model
deserialization (``V1Job``, ``V1PodList``, ...). Responses are recorded per (method, path):
JSON bodies shaped as the Kubernetes API returns them (batch/v1 and core/v1 reference).
Every request is kept in ``requests`` as ``(method, path, query, json_body)``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client
from kubernetes.client import rest


class _Raw:
    def __init__(self, status: int, data: bytes, content_type: str) -> None:
        self.status = status
        self.reason = {200: "OK", 201: "Created", 404: "Not Found"}.get(status, "")
        self.data = data
        self.headers = {"content-type": content_type}


class StubServer:
    """``routes[(METHOD, path)]`` -> (status, body) (dict bodies are JSON, str bodies text)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []

    def on(self, method: str, path: str, body: Any, status: int = 200) -> None:
        self.routes[(method, path)] = (status, body)

    def request(self, method, url, headers=None, body=None, post_params=None, _request_timeout=None):
        u = urlparse(url)
        self.requests.append((method, u.path, parse_qs(u.query), body))
        status, payload = self.routes.get(
            (method, u.path),
            (404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
        )
        if isinstance(payload, str):
            raw = _Raw(status, payload.encode(), "text/plain")
        else:
            raw = _Raw(status, json.dumps(payload).encode(), "application/json")
        resp = rest.RESTResponse(raw)
        if not 200 <= status <= 299:
            resp.read()
            raise client.ApiException(http_resp=resp)
        return resp

    def api_client(self) -> client.ApiClient:
        """An official ApiClient whose HTTP layer is this stub."""
        cfg = client.Configuration()
        cfg.host = "https://k8s.invalid"
        api = client.ApiClient(cfg)
        api.rest_client = self  # type: ignore[assignment]
        return api


def job_status(name: str, namespace: str, *, conditions=None, active=0, failed=0, suspend=False) -> dict:
    """A batch/v1 Job as the API returns it (metadata, spec.suspend, status)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "tao-skills"}},
        "spec": {"suspend": suspend, "template": {"spec": {"containers": [{"name": "runner", "image": "x"}]}}},
        "status": {"active": active or None, "failed": failed or None, "conditions": conditions or None},
    }


def condition(kind: str, reason: str = "", message: str = "") -> dict:
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": "2026-12-01T12:00:00Z"}
