"""One line for what went wrong talking to the cluster; no tracebacks for the expected."""

from __future__ import annotations

import json


class CliError(Exception):
    """A message for the user, printed as is."""


def describe(exc: BaseException) -> str | None:
    """The user's explanation of `exc`, or None when it is a bug (then the traceback helps)."""
    if isinstance(exc, CliError):
        return str(exc)
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    # The client raises subclasses (ForbiddenException, UnauthorizedException, ...).
    if any(c.__name__ == "ApiException" for c in type(exc).__mro__):
        return _api(exc)
    if name == "ConfigException" or module.startswith("kubernetes.config"):
        return f"kubeconfig: {exc}"
    if module.startswith("urllib3") or isinstance(exc, OSError):
        return f"cannot reach the Kubernetes API server {_reason(exc)}"
    return None


def _api(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    try:
        message = str(json.loads(getattr(exc, "body", "") or "")["message"])
    except (TypeError, ValueError, KeyError):
        message = str(getattr(exc, "reason", "") or exc)
    if status == 403:
        return f"forbidden: {message}"
    if status == 401:
        return f"unauthorized (check the kubeconfig's credentials): {message}"
    if status == 404:
        return f"not found: {message}"
    return f"the API server answered {status}: {message}"


def _reason(exc: BaseException) -> str:
    """urllib3 nests the socket error in MaxRetryError.reason; say the innermost."""
    import sys

    kube = sys.modules.get("sluice.cli.kube")
    url = getattr(kube, "SERVER", "") or getattr(exc, "url", None)
    inner: BaseException = getattr(exc, "reason", None) or exc
    text = str(inner)
    if "]" in text and "Errno" in text:  # "<conn>: Failed to ...: [Errno 111] Connection refused"
        text = text[text.index("[Errno") :]
    return f"{url}: {text}" if url else text
