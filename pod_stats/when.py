"""Times, durations and sizes as an operator types them: `--at '2026-11-30 03:10'`, `--at '2h ago'`,
`--since 6h`, `--retain 7d`, `--max-size 500M`. Standard library only.

Naive times are the machine's local time (as `date` and journalctl show it); every result is an
aware UTC datetime, like Snapshot.time.
"""

import re
from datetime import datetime, time, timedelta, timezone
from typing import Optional

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_duration(text: str) -> float:
    """'5s', '10m', '6h', '7d', '2w', '1h30m' → seconds (> 0)."""
    spec = text.strip().lower()
    parts = _DURATION.findall(spec)
    if not spec or _DURATION.sub("", spec).strip() or not parts:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 10m, 6h, 7d, 2w)")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be longer than 0")
    return seconds


def parse_size(text: str) -> int:
    """'500M' (MiB), '2G', '800K', '1048576' → bytes (powers of 1024, as journald's sizes)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size (e.g. 500M, 2G)")
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
    if size <= 0:
        raise ValueError(f"{text!r}: a size must be larger than 0")
    return size


def parse_time(text: str, now: Optional[datetime] = None) -> datetime:
    """'2026-11-30 03:10', '2026-11-30T03:10:00Z', '03:10' (today), '2h ago', 'now' → aware UTC."""
    now = now or datetime.now(timezone.utc)
    spec = text.strip()
    if spec.lower() == "now":
        return now
    if spec.lower().endswith(" ago"):
        return now - timedelta(seconds=parse_duration(spec[:-4]))
    try:
        clock = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", spec)
        if clock:
            hour, minute, second = (int(part or 0) for part in clock.groups())
            parsed = datetime.combine(now.astimezone().date(), time(hour, minute, second))
        else:
            iso = spec[:-1] + "+00:00" if spec.endswith(("Z", "z")) else spec
            parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time (e.g. '2026-11-30 03:10', '2026-11-30T03:10:00Z', '03:10', '2h ago', 'now')"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # the machine's local time
    return parsed.astimezone(timezone.utc)


def parse_since(text: str, until: datetime) -> datetime:
    """A window's start: a duration back from `until` ('6h') or a time (parse_time)."""
    try:
        return until - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        return parse_time(text, until)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (6h, 7d) nor a time ('2026-11-30 03:10', '2h ago')") from None
