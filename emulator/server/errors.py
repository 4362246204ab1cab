"""The error an API operation answers with, in the shape every AWS protocol carries."""

from __future__ import annotations


class ApiError(Exception):
    """An AWS error response: ``code`` is the error type clients match on (botocore's
    ``error.response["Error"]["Code"]``), ``message`` says what to do, ``status`` is HTTP's."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def validation_error(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def not_found() -> ApiError:
    """SageMaker answers an unknown job this way (not ResourceNotFound, which the model lists)."""
    return ApiError("ValidationException", "Requested resource not found.")
