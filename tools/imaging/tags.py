"""One BaseTag object per tag value, shared by the header reader (`sources`) and the look-ups (`volume`).

pydicom keeps a dataset's elements in a dict keyed by BaseTag, whose `__eq__` is Python: a look-up with
another object of the same value runs it, one with the very object used as the key does not (a dict
compares identity first). Reading a 300-slice series looks elements up some 10,000 times.
"""

from __future__ import annotations

from pydicom.tag import BaseTag, Tag, TagType

__all__ = ["SHARED_TAGS", "shared_tag"]

# Bounded: a file may hold any number of distinct (private) tags; past this, tags are not shared.
MAX_SHARED_TAGS = 4096
SHARED_TAGS: dict[int, BaseTag] = {}


def shared_tag(key: TagType) -> BaseTag:
    """The shared BaseTag of `key` (anything pydicom's `Tag` takes: a keyword, an int, a pair)."""
    tag = Tag(key)
    found = SHARED_TAGS.get(tag)
    if found is not None:
        return found
    if len(SHARED_TAGS) < MAX_SHARED_TAGS:
        SHARED_TAGS[int(tag)] = tag
    return tag
