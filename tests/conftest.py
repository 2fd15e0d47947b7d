"""Fixtures shared by several test files. napari is imported lazily so core tests never need it."""

from __future__ import annotations

import pytest


@pytest.fixture
def notes():
    """Notifications dispatched during the test (errors shown to the user, not raised)."""
    from napari.utils.notifications import notification_manager

    seen: list = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)
