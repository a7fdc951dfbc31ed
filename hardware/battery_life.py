"""Battery life of each operating mode from hardware/power_budget.json.

    python hardware/battery_life.py

life_h = capacity_mah * usable_fraction / sum(load.ma * load.duty)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BUDGET = Path(__file__).resolve().parent / "power_budget.json"


def load_budget(path: Path = BUDGET) -> dict:
    return json.loads(path.read_text())


def average_current_ma(mode: dict) -> float:
    for load in mode["loads"]:
        if not 0.0 <= load["duty"] <= 1.0:
            raise ValueError(f"{load['part']}: duty {load['duty']} is not between 0 and 1")
        if load["ma"] < 0:
            raise ValueError(f"{load['part']}: negative current")
    return sum(load["ma"] * load["duty"] for load in mode["loads"])


def battery_life_h(budget: dict, mode_name: str) -> float:
    battery = budget["battery"]
    usable_mah = battery["capacity_mah"] * battery["usable_fraction"]
    return usable_mah / average_current_ma(budget["modes"][mode_name])


def report(budget: dict) -> str:
    battery = budget["battery"]
    lines = [f"battery: {battery['capacity_mah']} mAh x {battery['usable_fraction']} usable"]
    for name, mode in budget["modes"].items():
        avg = average_current_ma(mode)
        life = battery_life_h(budget, name)
        target = mode.get("target_h")
        verdict = "" if target is None else f"  (target >= {target:g} h: {'met' if life >= target else 'MISSED'})"
        life_text = f"{life:8.1f} h" if life < 24 * 365 else f"{life / (24 * 365):8.1f} years"
        lines.append(f"{name:22s} {avg:9.3f} mA  {life_text}{verdict}")
    return "\n".join(lines)


def main() -> int:
    budget = load_budget()
    print(report(budget))
    missed = [n for n, m in budget["modes"].items()
              if m.get("target_h") is not None and battery_life_h(budget, n) < m["target_h"]]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
