"""moto's server with its clock made ``time.time()``, run as its own process by
``benchmarks._servers.moto(fast_clock=True)``: ``python _moto_fast_clock.py -H HOST -p PORT``.

moto computes "now, in seconds since the epoch" as ``utcnow() - utcfromtimestamp(0)``
through datetimes; :func:`unix_time` returns the same value from ``time.time()``. It
matters because moto's SQS SendMessage reads the queue's attributes, which count the
visible, delayed and in-flight messages by asking every message in the queue for the
time (4 calls per message): ~100 ms of server CPU per 10-message batch on average while
a queue fills to 1,000, which drowns any client-side effect in the benchmarks. The scan
stays (it is moto's); each step of it gets ~10x cheaper. Nothing else changes.
"""

from __future__ import annotations

import datetime
import sys
import time

import moto.core.utils as moto_utils

_datetime_unix_time = moto_utils.unix_time


def unix_time(dt: datetime.datetime | None = None) -> float:
    """moto's ``unix_time``: seconds since the epoch of ``dt`` (naive UTC), or now."""
    return time.time() if dt is None else _datetime_unix_time(dt)


def unix_time_millis(dt: datetime.datetime | None = None) -> float:
    """moto's ``unix_time_millis``: the same in milliseconds."""
    return unix_time(dt) * 1000.0


def install() -> None:
    """Replace the clock in moto's utilities and in its SQS models (imported by name)."""
    import moto.sqs.models as sqs_models

    for module in (moto_utils, sqs_models):
        module.unix_time = unix_time  # type: ignore[attr-defined]
        module.unix_time_millis = unix_time_millis  # type: ignore[attr-defined]


if __name__ == "__main__":
    from moto.server import main

    install()
    main(sys.argv[1:])
