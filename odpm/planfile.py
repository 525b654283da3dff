"""Channel plan files for ``odpm analyze --plan plan.csv`` (ITU-T G.694.1 flex grid).

A CSV with a header and one row per channel: ``channel,centre_thz,width_ghz``
(other columns are ignored, lines starting with ``#`` are comments).  Channels
are numbered 1..N in ascending frequency, so the ``channel`` column must read
1, 2, 3, ... in that order: a file that numbers them otherwise is more likely a
mistake than a plan.  Every error is one line naming the file, the line and
what is wrong.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from odpm.grid import ChannelPlan

#: The columns a plan file must have.
PLAN_COLUMNS = ("channel", "centre_thz", "width_ghz")


class PlanFileError(ValueError):
    """A plan file that cannot be read as a channel plan (one-line message)."""


def read_plan_csv(path: Path | str) -> ChannelPlan:
    """The flex-grid :class:`ChannelPlan` of a plan CSV; PlanFileError says what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PlanFileError(f"{path}: plan file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanFileError(f"{path}: cannot read the plan file: {exc}") from None
    rows = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not rows:
        raise PlanFileError(f"{path}: empty plan file (needs a header {','.join(PLAN_COLUMNS)})")
    header_line, header = rows[0][0], [h.strip().lower() for h in next(csv.reader([rows[0][1]]))]
    missing = [c for c in PLAN_COLUMNS if c not in header]
    if missing:
        raise PlanFileError(
            f"{path}: line {header_line}: the header lacks column {missing[0]!r} "
            f"(needs {','.join(PLAN_COLUMNS)}, got {','.join(header)})"
        )
    col = {name: header.index(name) for name in PLAN_COLUMNS}
    if len(rows) < 2:
        raise PlanFileError(f"{path}: no channels after the header")
    centres: list[float] = []
    widths: list[float] = []
    lines: list[int] = []
    for number, line in rows[1:]:
        cells = next(csv.reader([line]))
        values: dict[str, float] = {}
        for name, i in col.items():
            cell = cells[i].strip() if i < len(cells) else ""
            try:
                value = float(cell)
            except ValueError:
                raise PlanFileError(
                    f"{path}: line {number}: {name} {cell!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise PlanFileError(f"{path}: line {number}: {name} {cell!r} is not finite")
            values[name] = value
        expected = len(centres) + 1
        if values["channel"] != expected:
            raise PlanFileError(
                f"{path}: line {number}: channel {cell_text(values['channel'])} where channel "
                f"{expected} was expected (channels are numbered 1..N in ascending frequency)"
            )
        centres.append(values["centre_thz"])
        widths.append(values["width_ghz"])
        lines.append(number)
    try:
        return ChannelPlan.from_slots(centres, widths)
    except ValueError as exc:
        # The plan names the channel; the line of that channel helps more in a file.
        named = re.match(r"channel (\d+)", str(exc))
        where = f" line {lines[int(named.group(1)) - 1]}:" if named else ""
        raise PlanFileError(f"{path}:{where} {exc}") from None


def cell_text(value: float) -> str:
    """A number as the file most likely wrote it (``3`` rather than ``3.0``)."""
    return f"{value:g}"


def write_plan_csv(plan: ChannelPlan) -> str:
    """A plan as plan-file text (the inverse of :func:`read_plan_csv`)."""
    out = [",".join(PLAN_COLUMNS)]
    for ch, f, w in zip(plan.channel_numbers, plan.frequencies_thz, plan.widths_ghz, strict=True):
        out.append(f"{ch},{f:.6f},{w:g}")
    return "\n".join(out) + "\n"
