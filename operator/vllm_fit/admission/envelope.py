"""AdmissionReview bodies: the shape a review must have, what is trimmed before judging, the answers.

Pure functions over the decoded JSON; the server (server.py) calls them around kopf.
"""

from __future__ import annotations

from typing import Any


class BadReview(ValueError):
    pass


def validate_review(data: Any) -> dict[str, Any]:
    """Check the shape kopf relies on; raise BadReview with what is wrong."""
    if not isinstance(data, dict):
        raise BadReview("body is not a JSON object")
    if data.get("kind") != "AdmissionReview":
        raise BadReview(f"kind is {data.get('kind')!r}, not AdmissionReview")
    if data.get("apiVersion") not in ("admission.k8s.io/v1", "admission.k8s.io/v1beta1"):
        raise BadReview(f"apiVersion {data.get('apiVersion')!r} is not admission.k8s.io/v1")
    request = data.get("request")
    if not isinstance(request, dict):
        raise BadReview("request is missing or not an object")
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        raise BadReview("request.uid is missing")
    resource = request.get("resource")
    if not isinstance(resource, dict) or not all(isinstance(resource.get(k), str) for k in ("group", "version", "resource")):
        raise BadReview("request.resource must have string group, version and resource")
    if not isinstance(request.get("userInfo"), dict):
        raise BadReview("request.userInfo is missing")
    if not isinstance(request.get("operation"), str):
        raise BadReview("request.operation is missing")
    new, old = request.get("object"), request.get("oldObject")
    if new is None and old is None:
        raise BadReview("request has neither object nor oldObject")
    for name, value in (("object", new), ("oldObject", old)):
        if value is not None and not isinstance(value, dict):
            raise BadReview(f"request.{name} is not an object")
        if isinstance(value, dict) and not isinstance(value.get("metadata", {}), dict):
            raise BadReview(f"request.{name}.metadata is not an object")
        if isinstance(value, dict):
            # The API server always writes these as strings; kopf keys its memory on them.
            meta = value.get("metadata") or {}
            for key in ("uid", "name", "namespace", "generateName", "resourceVersion"):
                if meta.get(key) is not None and not isinstance(meta[key], str):
                    raise BadReview(f"request.{name}.metadata.{key} is not a string")
            for key in ("kind", "apiVersion"):
                if value.get(key) is not None and not isinstance(value[key], str):
                    raise BadReview(f"request.{name}.{key} is not a string")
    return data


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def trim_for_review(data: dict[str, Any]) -> None:
    """Drop what no judgement reads and kopf would otherwise copy and diff on every call:
    managedFields and kubectl's last-applied copy of the whole object. Annotation paths stay
    valid for the mutating patch (the annotations map itself is kept)."""
    request = data["request"]
    for key in ("object", "oldObject"):
        obj = request.get(key)
        if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
            meta = obj["metadata"]
            meta.pop("managedFields", None)
            if isinstance(meta.get("annotations"), dict):
                meta["annotations"].pop(LAST_APPLIED, None)


def admit(data: dict[str, Any], warnings: tuple[str, ...] = ()) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": data["request"]["uid"], "allowed": True}
    if warnings:
        response["warnings"] = list(warnings)
    return {"apiVersion": data.get("apiVersion", "admission.k8s.io/v1"), "kind": "AdmissionReview",
            "response": response}


def admit_with_warning(data: dict[str, Any], warning: str) -> dict[str, Any]:
    return admit(data, (warning,))


def deny(uid: str, message: str, api_version: str = "admission.k8s.io/v1") -> dict[str, Any]:
    """A denial as kubectl shows it: `Error from server (Forbidden): ...`."""
    return {"apiVersion": api_version, "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": False,
                         "status": {"code": 403, "reason": "Forbidden", "message": message}}}


def with_forbidden_reason(response: Any) -> Any:
    """kopf sets code and message only; the API server passes status.reason on to kubectl."""
    try:
        status = response["response"].get("status") if response["response"].get("allowed") is False else None
    except (AttributeError, KeyError, TypeError):
        return response
    if isinstance(status, dict) and status.get("code") == 403 and not status.get("reason"):
        status["reason"] = "Forbidden"
    return response
