"""AWS Lambda entry point: ``signaling_lambda.handler.lambda_handler``.

The app is built once per container from the environment (see settings.py) and reused by
warm invocations. HTTP requests (the browser pages' HTTP APIs, payload 2.0) go to pages.py
before any of it: they never reach signaling.
"""

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
