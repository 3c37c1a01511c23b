"""Replies of the memory specialist. It needs no model: requests are parsed deterministically."""

MEMORY_LIST_HEADER = "Here is what I remember about you ({count}):"
MEMORY_LIST_EMPTY = "I don't remember anything about you yet."
MEMORY_HOW_TO = (
    'To erase one memory say "forget <words from it>" or `/memory forget <id>`; '
    'say "forget everything" (or `/memory clear`) to erase them all, '
    'and "remember that …" (or `/memory remember …`) to add one.'
)
MEMORY_REMEMBERED = "Noted: {text}"
MEMORY_UPDATED = "Updated what I remembered (“{previous}”) to: {text}"
MEMORY_FORGOT_ONE = "Forgotten: {text}"
MEMORY_FORGOT_SOME = "Forgotten ({count}):"
MEMORY_FORGOT_NONE = "I don't remember anything matching “{what}”, so there was nothing to forget."
MEMORY_FORGOT_ALL = "Done: I forgot everything I remembered about you ({count} memories)."
MEMORY_FORGOT_ALL_EMPTY = "There was nothing to forget: I didn't remember anything about you."
MEMORY_NO_SUCH_ID = "None of your memories has the id `{ref}`."
MEMORY_BAD_FACT = "I can only remember a short sentence (3 to 300 characters)."
MEMORY_FAILED = (
    "Your memories are unavailable right now ({reason}); nothing was changed. Please try again later."
)
