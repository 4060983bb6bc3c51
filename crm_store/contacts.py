"""Normalizing contact details (and names) so the same person is found whatever way they were written."""

from __future__ import annotations

import re
import unicodedata

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


_WORD = re.compile(r"[^\W_]+")  # letters and digits
# Scripts written without spaces between words: one "word" of two or more characters is already a whole name.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def name_key(name: str | None) -> str | None:
    """A name reduced to what tells people apart: case, accents, punctuation, spacing and word order removed
    ("Müller, Anna" and "anna  MULLER" both give "anna muller"). None for a name too thin to compare: fewer than
    two words or four letters (a Chinese, Japanese or Korean name: fewer than two characters)."""
    if not name:
        return None
    folded = unicodedata.normalize("NFKD", name.casefold())
    words = sorted(_WORD.findall("".join(ch for ch in folded if not unicodedata.combining(ch))))
    letters = "".join(words)
    if _UNSPACED.search(letters):
        return " ".join(words) if len(letters) >= 2 else None
    return " ".join(words) if len(words) >= 2 and len(letters) >= 4 else None
