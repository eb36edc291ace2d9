"""DNSMOS P.835 as stand-in primary labels: SIG, BAK and OVRL copied into s_mos, n_mos and g_mos.

3QUEST, the paper's labeller of S-MOS / N-MOS / G-MOS, is a paid tool that cannot run here; the demo, the S/N/G
model's build and the label-efficiency study train on these stand-ins instead (and say so wherever their numbers go).
"""

from __future__ import annotations

from ..tables import to_float

#: Primary target -> the DNSMOS P.835 column (`mtqnet annotate --teacher dnsmos`) that stands in for it.
STAND_IN_COLUMNS = {"s_mos": "dnsmos_sig", "n_mos": "dnsmos_bak", "g_mos": "dnsmos_ovrl"}


def stand_in_mos(value: str) -> str:
    """A DNSMOS value as a stand-in MOS: clipped into 1-5, the MOS heads' range (DNSMOS P.835 SIG gave 0.89 on real
    speech); values inside it and empty cells (a clip DNSMOS could not score) are kept as they are."""
    number = to_float(value)
    if number != number or 1.0 <= number <= 5.0:
        return "" if number != number else value
    return f"{min(5.0, max(1.0, number)):g}"


def add_stand_in_labels(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Copy DNSMOS P.835 SIG / BAK / OVRL into the primary label columns s_mos / n_mos / g_mos (`stand_in_mos`)."""
    return [{**row, **{target: stand_in_mos(row[column]) for target, column in STAND_IN_COLUMNS.items()}}
            for row in rows]


__all__ = ["STAND_IN_COLUMNS", "add_stand_in_labels", "stand_in_mos"]
