"""Names people give things (stores, API keys): shown in lists, the dashboard and the audit
log, so each is what it looks like."""

from __future__ import annotations

import unicodedata

# Control, format, surrogate and private-use characters are refused: a right-to-left
# override or a zero-width space makes a name display as another. Unassigned ones (Cn) are
# not, since they include emoji newer than this Python's Unicode tables.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
# Zero-width (non-)joiners belong to emoji sequences and to Persian and Indic words.
_JOINERS = frozenset({"\u200c", "\u200d"})


def printable(name: str, most: int) -> str:
    """``name`` normalised (NFC, no surrounding space), or ValueError saying what is wrong:
    nothing visible, a character that hides or reorders text, or more than ``most``
    characters."""
    if len(name) > 4 * most:  # far past any composition: refuse before normalising
        raise ValueError(f"must be at most {most} characters")
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise ValueError("must contain a visible character")
    if any(
        unicodedata.category(c) in _REFUSED_CATEGORIES and not _joins(name, i)
        for i, c in enumerate(name)
    ):
        raise ValueError("must not contain control or invisible format characters")
    if len(name) > most:
        raise ValueError(f"must be at most {most} characters")
    return name


def _joins(name: str, i: int) -> bool:
    """Whether ``name[i]`` is a joiner between two visible characters."""
    if name[i] not in _JOINERS or not 0 < i < len(name) - 1:
        return False
    return all(unicodedata.category(c)[0] not in "CZ" for c in (name[i - 1], name[i + 1]))
