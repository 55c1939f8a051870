"""The one exception hierarchy of cloudrift.

Every provider translates its SDK's errors into these classes at the boundary and
chains the original (``raise ObjectNotFoundError(...) from exc``), so callers never
need to import an SDK to handle an error. Callers that want to branch on the *kind*
of failure regardless of category can read ``exc.code`` (an :class:`ErrorCode`).

The document category is the one exception to translation: ``get_mongodb`` returns
the native driver client, so operation errors stay native ``pymongo.errors``; only
connect-time failures become :class:`DocumentConnectionError`.

::

    CloudRiftError
    ├── ConfigurationError                  bad provider, option, credentials or missing extra
    ├── BackendClosedError                  the backend was used after close()
    ├── FeatureNotSupportedError            the provider cannot do this (see capability tables)
    ├── InvalidArgumentError                a bad argument that is not a range (part_size, ...)
    ├── StorageError
    │   ├── ObjectNotFoundError             .key
    │   ├── ObjectExistsError               .key (upload(..., if_not_exists=True))
    │   ├── StoragePermissionError
    │   ├── BucketNotFoundError             .bucket (bucket / container missing)
    │   ├── InvalidKeyError                 .key (rejected before any network call)
    │   ├── InvalidRangeError               ranged read outside the object
    │   ├── InvalidMetadataError            user metadata not portable to every backend
    │   └── StorageConnectionError          server down / timed out
    ├── MessagingError
    │   ├── QueueNotFoundError
    │   │   └── TopicNotFoundError          .topic (topic ARN / name / stream)
    │   ├── MessageSendError                .succeeded {index: id}, .failed {index: reason}
    │   │   ├── MessageTooLargeError        .limit (bytes)
    │   │   └── InvalidMessageError         bad delay, attributes, missing FIFO group id
    │   ├── ReceiptHandleError              stale, unknown or foreign receipt handle
    │   ├── MessagingPermissionError
    │   └── MessagingConnectionError
    ├── DocumentError
    │   └── DocumentConnectionError         .host (never the password)
    ├── CacheError
    │   ├── CacheKeyNotFoundError           .key
    │   ├── CacheConnectionError            server down, timed out, connection lost
    │   ├── CacheResponseError              the server refused the command (WRONGTYPE, ...)
    │   └── CacheArgumentError              bad key, value or ttl (rejected before sending)
    ├── KVError
    │   └── KVValueError                    value is not JSON-serialisable (also TypeError)
    └── EmailError
        ├── EmailValidationError            bad address, header injection, no body, too large
        └── EmailSendError                  .succeeded {index: id}, .failed {index: reason}
            ├── RecipientRejectedError      .recipients
            ├── SenderUnverifiedError       .sender
            ├── EmailThrottledError         .retry_after (seconds or None)
            ├── EmailAuthenticationError
            ├── EmailConnectionError
            └── EmailDeliveryUnknownError   .message_id; may have been delivered: never resent

A few classes also derive from a builtin whose meaning they share, so generic code
keeps working: :class:`InvalidKeyError` and :class:`EmailValidationError` are
``ValueError``; :class:`ObjectNotFoundError` and :class:`CacheKeyNotFoundError` are
``KeyError``; :class:`FeatureNotSupportedError` is ``NotImplementedError``;
:class:`InvalidArgumentError` is ``ValueError``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence


class ErrorCode(enum.Enum):
    """What kind of failure an error is, independent of category or provider."""

    UNKNOWN = "unknown"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    PERMISSION_DENIED = "permission_denied"
    INVALID_ARGUMENT = "invalid_argument"
    FAILED_PRECONDITION = "failed_precondition"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"
    UNIMPLEMENTED = "unimplemented"
    CLOSED = "closed"
    CONFIGURATION = "configuration"


class CloudRiftError(Exception):
    """Root of every error cloudrift raises."""

    code: ErrorCode = ErrorCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(CloudRiftError):
    """The backend cannot be built as asked: unknown provider or option, missing or
    conflicting credentials, or an SDK extra that is not installed."""

    code = ErrorCode.CONFIGURATION


class BackendClosedError(CloudRiftError):
    """A backend was used after ``close()``; build a new one instead."""

    code = ErrorCode.CLOSED


class FeatureNotSupportedError(CloudRiftError, NotImplementedError):
    """The chosen provider cannot do this operation or option."""

    code = ErrorCode.UNIMPLEMENTED


class InvalidArgumentError(CloudRiftError, ValueError):
    """An argument is invalid for a reason other than a range (e.g. ``part_size=0``,
    ``consume(concurrency=0)``); raised before any network call."""

    code = ErrorCode.INVALID_ARGUMENT


# --------------------------------------------------------------------------- storage


class StorageError(CloudRiftError):
    """Base of every object-storage error."""


class ObjectNotFoundError(StorageError, KeyError):
    """The object does not exist."""

    code = ErrorCode.NOT_FOUND

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"object not found: {key!r}")
        self.key = key

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message


class ObjectExistsError(StorageError):
    """A conditional create found the key already present."""

    code = ErrorCode.ALREADY_EXISTS

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"object already exists: {key!r}")
        self.key = key


class PreconditionFailedError(StorageError):
    """A conditional write or read (``if_match``) found a different object, or none,
    under the key; nothing was written or returned. Re-read the object (its new ETag) and
    retry."""

    code = ErrorCode.FAILED_PRECONDITION

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"object {key!r} changed since its ETag was read (if_match did not match); "
            "nothing was written or read: re-read it and retry"
        )
        self.key = key


class StoragePermissionError(StorageError):
    """The credentials are not allowed to do this."""

    code = ErrorCode.PERMISSION_DENIED


class BucketNotFoundError(StorageError):
    """The bucket or container does not exist."""

    code = ErrorCode.NOT_FOUND

    def __init__(self, bucket: str, message: str | None = None) -> None:
        super().__init__(message or f"bucket or container not found: {bucket!r}")
        self.bucket = bucket


class InvalidKeyError(StorageError, ValueError):
    """The key is not valid on every backend; rejected before any network call."""

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid object key {key!r}: {reason}")
        self.key = key
        self.reason = reason


class InvalidRangeError(StorageError, ValueError):
    """A ranged read asked for bytes outside the object."""

    code = ErrorCode.INVALID_ARGUMENT


class InvalidMetadataError(StorageError, ValueError):
    """User metadata that some backend could not store; rejected before any network call."""

    code = ErrorCode.INVALID_ARGUMENT


class StorageConnectionError(StorageError):
    """The storage service could not be reached or did not answer in time."""

    code = ErrorCode.UNAVAILABLE


# ------------------------------------------------------------------------- messaging


class MessagingError(CloudRiftError):
    """Base of every messaging error."""


class QueueNotFoundError(MessagingError):
    """The queue does not exist."""

    code = ErrorCode.NOT_FOUND


class TopicNotFoundError(QueueNotFoundError):
    """The topic (or a subscription of it) does not exist; ``topic`` names it."""

    def __init__(self, topic: str, message: str | None = None) -> None:
        super().__init__(message or f"topic {topic!r} does not exist")
        self.topic = topic


class MessageSendError(MessagingError):
    """One or more messages were not sent.

    For a batch, ``succeeded`` maps input index → message id of every entry that
    *was* sent and ``failed`` maps input index → reason for every entry that was
    not; together they cover every input, so nothing is silently dropped.
    """

    def __init__(
        self,
        message: str,
        *,
        succeeded: Mapping[int, str] | None = None,
        failed: Mapping[int, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.succeeded: dict[int, str] = dict(succeeded or {})
        self.failed: dict[int, str] = dict(failed or {})


class MessageTooLargeError(MessageSendError, ValueError):
    """A single message is larger than the provider accepts."""

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, size: int, limit: int, message: str | None = None) -> None:
        super().__init__(
            message
            or f"message is {size} bytes, over the provider's limit of {limit} bytes; "
            "store the payload in object storage and send a reference instead"
        )
        self.size = size
        self.limit = limit


class InvalidMessageError(MessageSendError, ValueError):
    """The message cannot be sent as given; rejected before anything is sent."""

    code = ErrorCode.INVALID_ARGUMENT


class ReceiptHandleError(MessagingError):
    """The receipt handle is stale, unknown, or belongs to another backend instance."""

    code = ErrorCode.FAILED_PRECONDITION


class MessagingPermissionError(MessagingError):
    """The credentials are not allowed to do this."""

    code = ErrorCode.PERMISSION_DENIED


class MessagingConnectionError(MessagingError):
    """The messaging service could not be reached or did not answer in time."""

    code = ErrorCode.UNAVAILABLE


# -------------------------------------------------------------------------- document


class DocumentError(CloudRiftError):
    """Base of cloudrift's document-database errors (operation errors stay pymongo's)."""


class DocumentConnectionError(DocumentError):
    """The database could not be reached, authenticated against, or TLS-verified."""

    code = ErrorCode.UNAVAILABLE

    def __init__(self, message: str, *, host: str | None = None) -> None:
        super().__init__(message)
        self.host = host


# ----------------------------------------------------------------------------- cache


class CacheError(CloudRiftError):
    """Base of every cache error."""


class CacheKeyNotFoundError(CacheError, KeyError):
    """The key does not exist (raised only by operations that need it to)."""

    code = ErrorCode.NOT_FOUND

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"cache key not found: {key!r}")
        self.key = key

    def __str__(self) -> str:
        return self.message


class CacheConnectionError(CacheError):
    """The cache server could not be reached, timed out, or dropped the connection."""

    code = ErrorCode.UNAVAILABLE


class CacheResponseError(CacheError):
    """The server refused the command (wrong type, out of memory, no permission...)."""

    code = ErrorCode.FAILED_PRECONDITION


class LockNotAcquiredError(CacheError):
    """``cache.lock(...)`` could not take the lock (held by another owner) within
    ``wait`` seconds."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"lock {name!r} is held by another owner")
        self.name = name


class LockLostError(CacheError):
    """The lock expired (its ttl passed) before ``release()`` / ``extend()``, and may now
    be held by another owner; the other owner's lock was left alone. Work done under it
    may have overlapped with another owner: use a longer ttl or ``extend()``."""

    code = ErrorCode.FAILED_PRECONDITION

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"lock {name!r} expired before it was released or extended; another owner "
            "may hold it now"
        )
        self.name = name


class CacheArgumentError(CacheError, ValueError, TypeError):
    """A key, value or ttl was rejected before any command was sent."""

    code = ErrorCode.INVALID_ARGUMENT


class KVError(CloudRiftError):
    """Base of key-value store errors."""


class KVConflictError(KVError):
    """A conditional write (``if_version`` / ``if_absent``) found another version (or an
    entry, or none); nothing was changed. Re-read the entry and retry."""

    code = ErrorCode.FAILED_PRECONDITION

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"KV entry {key!r} changed; nothing was written")
        self.key = key


class KVValueError(KVError, TypeError):
    """The value cannot be stored as JSON; nothing was written."""

    code = ErrorCode.INVALID_ARGUMENT


# ----------------------------------------------------------------------------- email


class EmailError(CloudRiftError):
    """Base of every email error."""


class EmailValidationError(EmailError, ValueError):
    """The message is invalid and was not sent (bad address, header injection, ...)."""

    code = ErrorCode.INVALID_ARGUMENT


class EmailSendError(EmailError):
    """The provider did not accept one or more messages.

    For a batch, ``succeeded`` maps input index → message id of every message sent
    and ``failed`` maps input index → reason for every message that was not.
    """

    def __init__(
        self,
        message: str,
        *,
        succeeded: Mapping[int, str] | None = None,
        failed: Mapping[int, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.succeeded: dict[int, str] = dict(succeeded or {})
        self.failed: dict[int, str] = dict(failed or {})


class RecipientRejectedError(EmailSendError):
    """The provider refused one or more recipients."""

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, message: str, *, recipients: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.recipients = list(recipients)


class SenderUnverifiedError(EmailSendError):
    """The sender address or domain is not verified / linked for this provider."""

    code = ErrorCode.PERMISSION_DENIED

    def __init__(self, message: str, *, sender: str | None = None) -> None:
        super().__init__(message)
        self.sender = sender


class EmailThrottledError(EmailSendError):
    """The provider is rate limiting; retry after ``retry_after`` seconds if given."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EmailAuthenticationError(EmailSendError):
    """The provider refused the credentials."""

    code = ErrorCode.PERMISSION_DENIED


class EmailConnectionError(EmailSendError):
    """The email service could not be reached or did not answer in time."""

    code = ErrorCode.UNAVAILABLE


class EmailDeliveryUnknownError(EmailSendError):
    """The connection was lost after the message may have reached the server.

    The server may have accepted (and delivered) it, so it was not resent: resending
    could deliver it twice. Not an :class:`EmailConnectionError` on purpose, so code
    that retries connection errors does not resend it blindly.
    """

    code = ErrorCode.UNAVAILABLE

    def __init__(self, message: str, *, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id


__all__ = [
    "BackendClosedError",
    "BucketNotFoundError",
    "CacheArgumentError",
    "CacheConnectionError",
    "CacheError",
    "CacheKeyNotFoundError",
    "CacheResponseError",
    "CloudRiftError",
    "ConfigurationError",
    "DocumentConnectionError",
    "DocumentError",
    "EmailAuthenticationError",
    "EmailConnectionError",
    "EmailDeliveryUnknownError",
    "EmailError",
    "EmailSendError",
    "EmailThrottledError",
    "EmailValidationError",
    "ErrorCode",
    "FeatureNotSupportedError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidMessageError",
    "InvalidMetadataError",
    "InvalidRangeError",
    "KVConflictError",
    "KVError",
    "KVValueError",
    "LockLostError",
    "LockNotAcquiredError",
    "MessageSendError",
    "MessageTooLargeError",
    "MessagingConnectionError",
    "MessagingError",
    "MessagingPermissionError",
    "ObjectExistsError",
    "ObjectNotFoundError",
    "PreconditionFailedError",
    "QueueNotFoundError",
    "ReceiptHandleError",
    "RecipientRejectedError",
    "SenderUnverifiedError",
    "StorageConnectionError",
    "StorageError",
    "StoragePermissionError",
    "TopicNotFoundError",
]
