"""The one error type of the annotation server: a 4xx status and a message naming the problem."""

from __future__ import annotations


class ApiError(ValueError):
    """Bad input to the annotation API; the server answers ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)
