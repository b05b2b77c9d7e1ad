"""If-None-Match as RFC 9110 says: weak comparison, `*` matches any current entity."""

from __future__ import annotations

import pytest

from web.http import etag_matches


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", W/"abc"', True),
        ("*", True),
        (' "x" ,"abc" ', True),
        ('"x"', False),
        ('"ab"', False),
        ("", False),
        (None, False),
    ],
)
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert etag_matches('"abc"', header) is matches
    assert etag_matches('W/"abc"', header) is matches  # a weak tag of ours compares alike
