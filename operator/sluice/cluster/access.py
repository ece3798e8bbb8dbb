"""Which permission an HTTP request to the API server uses, as its authorizer sees it.

The same reading of method, path and query as Kubernetes' RequestInfo: the API group,
the resource (with its subresource: `rollouts/status`), the verb, and whether the
request was in a namespace. Paths that name no resource (`/api`, `/apis/<group>`,
`/version`: discovery, open to every authenticated user) have scope "nonresource".
Pure: no I/O, so the mapping is unit-tested apart from any client.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

# Subresources of a namespace itself: /api/v1/namespaces/<name>/status is the
# namespace's status, not a resource "status" in namespace <name>.
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_TRUE = {"1", "true"}


@dataclass(frozen=True, order=True)
class Access:
    group: str  # "" for the core group
    resource: str  # "deployments", "rollouts/status"; "" for a non-resource path
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection
    scope: str  # "namespaced", "cluster" or "nonresource"


def classify(method: str, url: str) -> Access:
    """The Access of one request; `url` may be absolute or a path, with its query."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qs(parts.query)
    method = method.upper()
    if len(segments) >= 2 and segments[0] == "api":
        group, rest = "", segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        group, rest = segments[1], segments[3:]
    else:
        rest = []
    if not rest:
        verb = {"GET": "get", "HEAD": "get", "POST": "post", "PUT": "put"}.get(method, "")
        return Access("", "", verb or method.lower(), "nonresource")

    watch = False
    if rest[0] == "watch":  # the old /watch/ prefix
        watch, rest = True, rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"

    if watch:
        verb = "watch"
    elif method in ("GET", "HEAD"):
        # ?watch=true only makes a watch of a collection (a named GET stays a get).
        if name:
            verb = "get"
        elif any(v.lower() in _TRUE for v in query.get("watch", [])):
            verb = "watch"
        else:
            verb = "list"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
    return Access(group, resource, verb, "namespaced" if namespace else "cluster")
