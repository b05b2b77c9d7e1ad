"""What text a person may give us: one rule, used by the API's field types and by the
services that take text from elsewhere (the command line, Supabase claims).

PostgreSQL refuses NUL in text and JSON, and control characters make no sense in a
name, an email or a search filter; bidirectional overrides there let one string show
as another (`admin\u202egro.elpmaxe@` reads as an address it is not). A multi-line
text (a description) may hold tabs and line breaks, and bidi controls, which right-
to-left writing needs; never NUL or other control characters.

The rules are regular expressions in the syntax Python and ECMA-262 share, so the
same string is the `pattern` of the published JSON Schema: a client (or schemathesis)
knows what is accepted without sending it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from common.errors import InvalidInput

#: C0 controls (tab, line feed and carriage return included), DEL and C1 controls.
_CONTROLS = r"\x00-\x1f\x7f-\x9f"
#: C0 controls but tab, line feed and carriage return; DEL; C1 controls.
_CONTROLS_BUT_LINE_BREAKS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
#: Bidirectional embeddings, overrides and isolates (U+202A-202E, U+2066-2069).
_BIDI = r"\u202a-\u202e\u2066-\u2069"

#: One line: names, labels, emails, filters.
LABEL_PATTERN = rf"^[^{_CONTROLS}{_BIDI}]*$"
#: A label with at least one character that is not a space: what a thing is named by.
NAME_PATTERN = rf"^[^{_CONTROLS}{_BIDI}]*[^\s{_CONTROLS}{_BIDI}][^{_CONTROLS}{_BIDI}]*$"
#: A label that is an absolute POSIX path: what `resolve_import_path` accepts.
ABSOLUTE_PATH_PATTERN = rf"^/[^{_CONTROLS}{_BIDI}]*$"
#: Several lines: descriptions.
TEXT_PATTERN = rf"^[^{_CONTROLS_BUT_LINE_BREAKS}]*$"
#: What `normalise_email` accepts: a local part of at most 64 characters, an @, and a
#: domain with a dot; no spaces, controls or bidi characters anywhere.
_NOT_IN_EMAIL = rf"@\s{_CONTROLS}{_BIDI}"
EMAIL_PATTERN = rf"^[^{_NOT_IN_EMAIL}]{{1,64}}@[^{_NOT_IN_EMAIL}]+\.[^{_NOT_IN_EMAIL}]+$"

#: What `common.naming.safe_name` accepts (its 255-byte limit aside): no separators, not
#: `.` or `..`, not only spaces, no controls or bidi characters.
_NOT_IN_NAME = rf"/\\{_CONTROLS}{_BIDI}"
FILE_NAME_PATTERN = rf"^(?!\.\.?$)[^{_NOT_IN_NAME}]*[^\s{_NOT_IN_NAME}][^{_NOT_IN_NAME}]*$"


def name_with_extension_pattern(extensions: list[str]) -> str:
    """FILE_NAME_PATTERN for names that end in one of `extensions` (any case)."""

    def any_case(text: str) -> str:
        return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in text)

    endings = "|".join(any_case(ext) for ext in sorted(extensions, key=len, reverse=True))
    return rf"^(?!\.\.?$)[^{_NOT_IN_NAME}]*(?:{endings})$"


_LABEL = re.compile(LABEL_PATTERN)
_TEXT = re.compile(TEXT_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)
_UNSAFE_IN_LABEL = re.compile(rf"[{_CONTROLS}{_BIDI}]")
_UNSAFE_IN_TEXT = re.compile(rf"[{_CONTROLS_BUT_LINE_BREAKS}]")


def _offender(value: str, unsafe: re.Pattern[str]) -> str:
    found = unsafe.search(value)
    return f"U+{ord(found.group()):04X}" if found else "?"


def label_error(value: str) -> str | None:
    """Why `value` is not a one-line label (None when it is)."""
    if _LABEL.match(value):
        return None
    return (
        f"must be one line without control or bidirectional-override characters "
        f"(found {_offender(value, _UNSAFE_IN_LABEL)})"
    )


def text_error(value: str) -> str | None:
    """Why `value` is not a text (None when it is)."""
    if _TEXT.match(value):
        return None
    return (
        f"must not contain NUL or control characters other than tab and line breaks "
        f"(found {_offender(value, _UNSAFE_IN_TEXT)})"
    )


def is_email(value: str) -> bool:
    """Whether `value` is an email address as accounts store it (already lower-cased)."""
    return len(value) <= 320 and _EMAIL.match(value) is not None


def check_label(value: str, what: str) -> str:
    """`value` if it is a one-line label, else InvalidInput naming `what`."""
    if (why := label_error(value)) is not None:
        raise InvalidInput(f"{what} {why}")
    return value


def _label(value: str) -> str:
    if (why := label_error(value)) is not None:
        raise ValueError(why)
    return value


#: One line of text (names, labels, search filters) in a request or params model; its
#: schema says what the validator enforces.
Label = Annotated[str, AfterValidator(_label), Field(json_schema_extra={"pattern": LABEL_PATTERN})]
