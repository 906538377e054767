"""Where the package's tests run: TOOZ_PY_TEST_URLS (comma-separated tooz URLs of backends
that Python tooz 9.1 also has a driver for, without the rs+ prefix); zake-free defaults."""

import os
import uuid

import pytest


def _urls():
    listed = os.environ.get("TOOZ_PY_TEST_URLS")
    if listed:
        return [u for u in listed.split(",") if u]
    return ["file:///tmp/tooz-py-tests"]


@pytest.fixture(params=_urls())
def url(request):
    """A backend URL for Python tooz's own driver; prefix it with rs+ for ours."""
    return request.param


@pytest.fixture
def name():
    return uuid.uuid4().hex.encode()
