"""Normalizing contact details so the same person is found whatever way an e-mail or phone was written."""

from __future__ import annotations

import re

import phonenumbers

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str | None) -> str | None:
    """Lower-cased, trimmed e-mail, or None when empty; raises ValueError when it is not an e-mail."""
    if email is None or not email.strip():
        return None
    value = email.strip().lower()
    if not _EMAIL.match(value):
        raise ValueError(f"not an e-mail address: {email.strip()!r}")
    return value


def normalize_phone(phone: str | None, region: str = "US") -> str | None:
    """The E.164 form (+8613800138000), or None when empty; raises ValueError when it is not a valid number."""
    if phone is None or not phone.strip():
        return None
    try:
        parsed = phonenumbers.parse(phone.strip(), None if phone.strip().startswith("+") else region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {phone.strip()!r}") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"not a phone number: {phone.strip()!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
