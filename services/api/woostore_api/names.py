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
# Letters and symbols that show nothing: the Hangul fillers and the blank Braille pattern. A
# name of them alone was taken, and listed as a blank row.
_BLANKS = frozenset({"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"})


def printable(name: str, most: int) -> str:
    """``name`` normalised (NFC, no surrounding space), or ValueError saying what is wrong:
    nothing visible, a character that hides or reorders text, or more than ``most``
    characters."""
    if len(name) > 4 * most:  # far past any composition: refuse before normalising
        raise ValueError(f"must be at most {most} characters")
    name = unicodedata.normalize("NFC", name).strip()
    # A visible character is a letter, a number, punctuation or a symbol: combining marks
    # alone (each drawn on a dotted circle) and spaces are not.
    if not any(unicodedata.category(c)[0] in "LNPS" and c not in _BLANKS for c in name):
        raise ValueError("must contain a visible character")
    if any(
        (unicodedata.category(c) in _REFUSED_CATEGORIES and not _joins(name, i)) or c in _BLANKS
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
