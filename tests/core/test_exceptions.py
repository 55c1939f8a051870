"""The exception hierarchy is the one the seed README imports, rooted at CloudRiftError."""

from __future__ import annotations

import inspect

import pytest

from cloudrift.core import exceptions as ex


def test_seed_names_import_from_one_module() -> None:
    """Every name the seed README imports exists in cloudrift.core.exceptions."""
    seed_names = [
        "ObjectNotFoundError",
        "StoragePermissionError",
        "StorageError",
        "QueueNotFoundError",
        "MessageSendError",
        "MessagingError",
        "FeatureNotSupportedError",
        "DocumentConnectionError",
        "CacheKeyNotFoundError",
        "CacheConnectionError",
        "CacheError",
        "EmailError",
        "EmailSendError",
        "RecipientRejectedError",
        "SenderUnverifiedError",
        "EmailThrottledError",
    ]
    for name in seed_names:
        assert issubclass(getattr(ex, name), ex.CloudRiftError), name


def test_every_exported_class_derives_from_the_root() -> None:
    """All classes in __all__ except ErrorCode are CloudRiftError subclasses."""
    for name in ex.__all__:
        obj = getattr(ex, name)
        if name == "ErrorCode":
            continue
        assert inspect.isclass(obj) and issubclass(obj, ex.CloudRiftError), name


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (ex.ObjectNotFoundError, ex.StorageError),
        (ex.MessageTooLargeError, ex.MessageSendError),
        (ex.RecipientRejectedError, ex.EmailSendError),
        (ex.SenderUnverifiedError, ex.EmailSendError),
        (ex.EmailThrottledError, ex.EmailSendError),
        (ex.DocumentConnectionError, ex.DocumentError),
        (ex.CacheConnectionError, ex.CacheError),
    ],
)
def test_category_families(child: type[Exception], parent: type[Exception]) -> None:
    """Specific errors can be caught through their category's family class."""
    assert issubclass(child, parent)


def test_not_found_errors_print_their_message_not_a_repr() -> None:
    """KeyError-derived errors print a readable message naming the key."""
    assert str(ex.ObjectNotFoundError("a/b.txt")) == "object not found: 'a/b.txt'"
    assert str(ex.CacheKeyNotFoundError("k")) == "cache key not found: 'k'"


def test_error_codes_let_callers_branch_without_the_category() -> None:
    """Not-found errors of different categories share one code."""
    assert ex.ObjectNotFoundError("k").code is ex.ErrorCode.NOT_FOUND
    assert ex.QueueNotFoundError("q").code is ex.ErrorCode.NOT_FOUND
    assert ex.BackendClosedError("x").code is ex.ErrorCode.CLOSED


def test_batch_errors_account_for_every_entry() -> None:
    """A batch send error carries both the sent ids and the failures."""
    err = ex.MessageSendError("1 of 2 failed", succeeded={0: "id-0"}, failed={1: "too big"})
    assert err.succeeded == {0: "id-0"} and err.failed == {1: "too big"}


def test_too_large_error_names_the_limit() -> None:
    """An oversized message error states the size and the limit."""
    err = ex.MessageTooLargeError(300_000, 262_144)
    assert "262144" in str(err) and "300000" in str(err)
