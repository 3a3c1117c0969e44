"""Server-Sent Events framing (text/event-stream): ``event:``, ``id:`` and ``data:`` lines, blank line."""

from __future__ import annotations

__all__ = ["sse_event"]


def sse_event(event: str, data: bytes | str, *, event_id: str | None = None) -> bytes:
    """One event. Multi-line data becomes several ``data:`` lines, as the format requires."""
    if "\n" in event or "\r" in event:
        raise ValueError("an SSE event name cannot contain a line break")
    text = data.decode() if isinstance(data, bytes) else data
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return ("\n".join(lines) + "\n\n").encode()
