from __future__ import annotations

from typing import Any

import pytest

ORDER: dict[str, Any] = {"order": {"id": 123, "items": [{"price": 90.0}, {"price": 9.99}]}}


@pytest.fixture
def order() -> dict[str, Any]:
    return {"order": {**ORDER["order"], "items": list(ORDER["order"]["items"])}}
