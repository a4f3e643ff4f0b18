"""The one error hierarchy of matrixd.

Handlers and library code raise these; the HTTP edge turns them into the
Matrix error JSON ``{"errcode": ..., "error": ...}`` with the right status.
"""

from __future__ import annotations

from typing import Any


class Codes:
    """Matrix error codes (``errcode``) from the client-server and federation specs."""

    UNRECOGNIZED = "M_UNRECOGNIZED"
    UNAUTHORIZED = "M_UNAUTHORIZED"
    FORBIDDEN = "M_FORBIDDEN"
    BAD_JSON = "M_BAD_JSON"
    NOT_JSON = "M_NOT_JSON"
    USER_IN_USE = "M_USER_IN_USE"
    ROOM_IN_USE = "M_ROOM_IN_USE"
    BAD_PAGINATION = "M_BAD_PAGINATION"
    BAD_STATE = "M_BAD_STATE"
    UNKNOWN = "M_UNKNOWN"
    NOT_FOUND = "M_NOT_FOUND"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    GUEST_ACCESS_FORBIDDEN = "M_GUEST_ACCESS_FORBIDDEN"
    LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
    CAPTCHA_NEEDED = "M_CAPTCHA_NEEDED"
    CAPTCHA_INVALID = "M_CAPTCHA_INVALID"
    MISSING_PARAM = "M_MISSING_PARAM"
    INVALID_PARAM = "M_INVALID_PARAM"
    TOO_LARGE = "M_TOO_LARGE"
    EXCLUSIVE = "M_EXCLUSIVE"
    THREEPID_AUTH_FAILED = "M_THREEPID_AUTH_FAILED"
    THREEPID_IN_USE = "M_THREEPID_IN_USE"
    THREEPID_NOT_FOUND = "M_THREEPID_NOT_FOUND"
    THREEPID_DENIED = "M_THREEPID_DENIED"
    INVALID_USERNAME = "M_INVALID_USERNAME"
    SERVER_NOT_TRUSTED = "M_SERVER_NOT_TRUSTED"
    CONSENT_NOT_GIVEN = "M_CONSENT_NOT_GIVEN"
    CANNOT_LEAVE_SERVER_NOTICE_ROOM = "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"
    RESOURCE_LIMIT_EXCEEDED = "M_RESOURCE_LIMIT_EXCEEDED"
    UNSUPPORTED_ROOM_VERSION = "M_UNSUPPORTED_ROOM_VERSION"
    INCOMPATIBLE_ROOM_VERSION = "M_INCOMPATIBLE_ROOM_VERSION"
    WRONG_ROOM_KEYS_VERSION = "M_WRONG_ROOM_KEYS_VERSION"
    EXPIRED_ACCOUNT = "M_EXPIRED_ACCOUNT"
    PASSWORD_TOO_SHORT = "M_PASSWORD_TOO_SHORT"
    WEAK_PASSWORD = "M_WEAK_PASSWORD"
    INVALID_SIGNATURE = "M_INVALID_SIGNATURE"
    USER_DEACTIVATED = "M_USER_DEACTIVATED"
    USER_LOCKED = "M_USER_LOCKED"
    USER_SUSPENDED = "M_USER_SUSPENDED"
    INVALID_ROOM_STATE = "M_INVALID_ROOM_STATE"
    UNABLE_TO_AUTHORISE_JOIN = "M_UNABLE_TO_AUTHORISE_JOIN"
    UNABLE_TO_GRANT_JOIN = "M_UNABLE_TO_GRANT_JOIN"
    DUPLICATE_ANNOTATION = "M_DUPLICATE_ANNOTATION"
    NOT_YET_UPLOADED = "M_NOT_YET_UPLOADED"
    CANNOT_OVERWRITE_MEDIA = "M_CANNOT_OVERWRITE_MEDIA"
    UNKNOWN_POS = "M_UNKNOWN_POS"
    MISSING_USER = "M_MISSING_USER"
    BAD_ALIAS = "M_BAD_ALIAS"
    UNACTIONABLE = "M_UNACTIONABLE"


class MatrixError(Exception):
    """An error with an HTTP status, a Matrix errcode and a human message.

    ``additional_fields`` are merged into the JSON body (e.g. ``retry_after_ms``).
    """

    def __init__(
        self,
        code: int,
        msg: str,
        errcode: str = Codes.UNKNOWN,
        additional_fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.errcode = errcode
        self.additional_fields = dict(additional_fields or {})
        self.headers = headers

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errcode": self.errcode, "error": self.msg}
        body.update(self.additional_fields)
        return body


class AuthError(MatrixError):
    """The requester, or an event, is not allowed to do this (403 by default)."""

    def __init__(self, code: int = 403, msg: str = "Forbidden", errcode: str = Codes.FORBIDDEN,
                 additional_fields: dict[str, Any] | None = None) -> None:
        super().__init__(code, msg, errcode, additional_fields)


class InvalidClientTokenError(MatrixError):
    """An access token was given but is not (or no longer) valid."""

    def __init__(self, msg: str = "Invalid access token passed.", soft_logout: bool = False) -> None:
        super().__init__(401, msg, Codes.UNKNOWN_TOKEN, {"soft_logout": soft_logout})


class MissingClientTokenError(MatrixError):
    def __init__(self, msg: str = "Missing access token.") -> None:
        super().__init__(401, msg, Codes.MISSING_TOKEN)


class NotFoundError(MatrixError):
    def __init__(self, msg: str = "Not found", errcode: str = Codes.NOT_FOUND) -> None:
        super().__init__(404, msg, errcode)


class BadJsonError(MatrixError):
    """The body parsed but has the wrong shape (400 M_BAD_JSON)."""

    def __init__(self, msg: str) -> None:
        super().__init__(400, msg, Codes.BAD_JSON)


class InvalidParamError(MatrixError):
    def __init__(self, msg: str) -> None:
        super().__init__(400, msg, Codes.INVALID_PARAM)


class MissingParamError(MatrixError):
    def __init__(self, msg: str) -> None:
        super().__init__(400, msg, Codes.MISSING_PARAM)


class UnrecognizedRequestError(MatrixError):
    def __init__(self, msg: str = "Unrecognized request", code: int = 404) -> None:
        super().__init__(code, msg, Codes.UNRECOGNIZED)


class LimitExceededError(MatrixError):
    def __init__(self, retry_after_ms: int | None = None, msg: str = "Too Many Requests") -> None:
        fields: dict[str, Any] = {}
        headers = None
        if retry_after_ms is not None:
            fields["retry_after_ms"] = int(retry_after_ms)
            headers = {"Retry-After": str(max(1, (int(retry_after_ms) + 999) // 1000))}
        super().__init__(429, msg, Codes.LIMIT_EXCEEDED, fields, headers)
        self.retry_after_ms = retry_after_ms


class UnsupportedRoomVersionError(MatrixError):
    def __init__(self, msg: str = "Homeserver does not support this room version") -> None:
        super().__init__(400, msg, Codes.UNSUPPORTED_ROOM_VERSION)


class IncompatibleRoomVersionError(MatrixError):
    def __init__(self, room_version: str) -> None:
        super().__init__(
            400,
            "Your homeserver does not support the features required to join this room",
            Codes.INCOMPATIBLE_ROOM_VERSION,
            {"room_version": room_version},
        )


class EventFormatError(MatrixError):
    """A PDU failed validation (size, field lengths, types); never persisted."""

    def __init__(self, msg: str) -> None:
        super().__init__(400, msg, Codes.BAD_JSON)


class SignatureVerifyError(MatrixError):
    """A signature on an event or request did not verify."""

    def __init__(self, msg: str) -> None:
        super().__init__(401, msg, Codes.UNAUTHORIZED)


class ConfigError(Exception):
    """The configuration is invalid; ``key`` names the offending setting."""

    def __init__(self, key: str, msg: str) -> None:
        super().__init__(f"config key {key!r}: {msg}")
        self.key = key
        self.msg = msg
