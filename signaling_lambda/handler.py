"""AWS Lambda entry point: ``signaling_lambda.handler.lambda_handler``.

The app (its AWS clients, its registry) is built once per container from the environment
(see settings.py) and reused by warm invocations. On Lambda it is built at import, in the
init phase, so the first invocation does not pay for it (benchmarks/lambda_cold_start.py
measures both); a configuration error is then reported by each invocation. HTTP requests
(the browser pages' HTTP APIs, payload 2.0) go to pages.py before any of it: they never
reach signaling.
"""

import contextlib
import logging
import os
from typing import Any

from signaling_lambda import authorizer, pages
from signaling_lambda.app import INTERNAL_ERROR, SignalingApp
from signaling_lambda.settings import ConfigError, Settings

log = logging.getLogger("signaling_lambda")
_app: SignalingApp | None = None


def _get_app() -> SignalingApp:
    global _app  # noqa: PLW0603 - one app per Lambda container, by design
    if _app is None:
        settings = Settings.from_environ(os.environ)
        log.setLevel(settings.log_level)
        _app = SignalingApp.from_settings(settings)
    return _app


def _running_on_lambda() -> bool:
    """True inside a Lambda execution environment (its runtime API is in the environment)."""
    return "AWS_LAMBDA_RUNTIME_API" in os.environ


if _running_on_lambda():
    # The init phase: create what every invocation of this container shares.
    with contextlib.suppress(ConfigError):  # each invocation logs it (lambda_handler)
        _get_app()


class Unauthorized(Exception):
    """What an authorizer raises for API Gateway to answer HTTP 401 (a Deny would be 403)."""


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    if pages.is_http_request(event):
        return pages.respond(event, os.environ)
    try:
        app = _get_app()
    except ConfigError as exc:
        log.info("===== Lambda Handler Started =====")
        log.error("Configuration error: %s", exc)
        if authorizer.is_authorizer_request(event):
            raise Unauthorized("Unauthorized") from None
        return INTERNAL_ERROR
    response = app.handle(event, context)
    if authorizer.is_authorizer_request(event) and authorizer.allowed_context(response) is None:
        raise Unauthorized("Unauthorized")
    return response
