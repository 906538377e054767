"""tooz-rs drivers for Python tooz.

Installing this package registers one ``tooz.backends`` entry point per tooz-rs driver,
named ``rs+<scheme>``: ``tooz.coordination.get_coordinator("rs+redis://127.0.0.1:6379",
b"me")`` then runs on tooz-rs's Rust core, with Python tooz's API, exceptions and
characteristics. See ``tooz_rs.driver`` for what is added on top (fencing tokens and the
lost signal of locks).
"""

from tooz_rs._native import DRIVERS
from tooz_rs.driver import RustDriver, RustLock

SCHEME_PREFIX = "rs+"
"""What a tooz URL's scheme starts with to select a tooz-rs driver."""

__all__ = ["DRIVERS", "RustDriver", "RustLock", "SCHEME_PREFIX"]
