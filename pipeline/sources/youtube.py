"""YouTube ids as the video datasets write them: 11 characters that may begin with '-' and contain '_'."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")


def is_youtube_id(value: str) -> bool:
    return YOUTUBE_ID.fullmatch(value) is not None


def youtube_id_from_url(url: str) -> str | None:
    """The `v=` parameter of a watch URL (extra parameters such as `&t=6s` ignored) or a youtu.be path."""
    parsed = urlparse(url.strip())
    if parsed.netloc.endswith("youtu.be"):
        candidate = parsed.path.lstrip("/")
    else:
        candidate = parse_qs(parsed.query).get("v", [""])[0]
    return candidate if is_youtube_id(candidate) else None
