"""Container image references as the config takes them: `[host[:port]/]path[:tag][@sha256:<64 hex>]`.

A digest pins the exact image Cloud Build pushed (docs/containers.md); a tag alone can move.
"""

import re

_HOST_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})+|localhost)(?::[0-9]+)?"  # has a dot or is localhost
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"(?:{_HOST}/)?{_PATH_PART}(?:/{_PATH_PART})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
FORM = "[host[:port]/]path[:tag][@sha256:<64 hex digits>]"


def check_image_ref(ref: str) -> str:
    """Return `ref` if it is a valid image reference, else raise ValueError saying what is wrong."""
    if "://" in ref:
        raise ValueError(f"an image reference has no scheme, got {ref!r} (expected {FORM})")
    name_tag, at, digest = ref.partition("@")
    if at and not DIGEST.fullmatch(digest):
        raise ValueError(f"the digest must be 'sha256:' and 64 lowercase hex digits, got {digest!r} in {ref!r}")
    name, tag = name_tag, ""
    if ":" in name_tag.rsplit("/", 1)[-1]:
        name, _, tag = name_tag.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise ValueError(f"bad tag {tag!r} in {ref!r} (expected {FORM})")
    if not _NAME.fullmatch(name):
        raise ValueError(f"not an image reference: {ref!r} (expected {FORM}; repository paths are lowercase)")
    return ref
