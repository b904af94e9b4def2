"""Detection quality over several simulated deployments: the backtest table per seed and tenant
count, and the worst figure of each across them, so a change tuned to one seed shows up.

    python -m bench.quality                        # seeds 3/15, 7/25, 11/40 tenants
    python -m bench.quality --run 5:60 --run 13:20 # other seeds:tenant counts

Each dump has 14 clean days (training) and 7 days with attacks and hard negatives. Prints the
table of each and one JSON line last with the per-run figures and the worst of each.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from typing import Any

import click

from bench.common import BENCH_DIR

DEFAULT_RUNS = ("3:15", "7:25", "11:40")


def _dump(seed: int, tenants: int, days: int, attack_days: int) -> Any:
    from breachwatch.devkit.simulate import ACCESS_REQUESTS_FILE, simulate

    out = BENCH_DIR / f"quality-t{tenants}-d{days}-a{attack_days}-s{seed}"
    # A dump cached by a simulator without staff scenarios (no approvals file) is made again.
    if not (out / "labels.json").exists() or not (out / ACCESS_REQUESTS_FILE).exists():
        simulate(out, seed=seed, days=days, tenants=tenants, attack_days=attack_days)
    return out


@click.command()
@click.option("--run", "runs", multiple=True, help="SEED:TENANTS (repeatable)")
@click.option("--days", type=int, default=21, show_default=True)
@click.option("--attack-days", type=int, default=7, show_default=True)
def main(runs: tuple[str, ...], days: int, attack_days: int) -> None:
    from breachwatch.cli.common import cpus, parse_ts
    from breachwatch.core.settings import load_settings
    from breachwatch.devkit.backtest import backtest_dump

    # The per-run tables are the output; migrations and training chatter are not.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = load_settings()
    results: list[dict[str, Any]] = []
    for spec in runs or DEFAULT_RUNS:
        seed, tenants = (int(x) for x in spec.split(":"))
        dump = _dump(seed, tenants, days, attack_days)
        truth = json.loads((dump / "labels.json").read_text(encoding="utf-8"))
        t0 = time.perf_counter()
        ev = backtest_dump(settings, dump, truth, parse_ts(truth["clean_until"]), jobs=cpus())
        print(f"\n== seed {seed}, {tenants} tenants ({time.perf_counter() - t0:.0f}s)\n{ev.table()}", flush=True)
        for miss in ev.missed:
            print(f"   missed: {miss}")
        for false in ev.false_list:
            print(f"   false: {false}")
        results.append({"seed": seed, "tenants": tenants, **ev.as_dict()})
    kinds = sorted({k for r in results for k in r["recall"]})
    worst_recall = {k: min(r["recall"][k] for r in results if r["recall"].get(k) is not None) for k in kinds}
    ttd = [r["median_time_to_detect_s"] for r in results if r["median_time_to_detect_s"] is not None]
    summary = {
        "bench": "quality",
        "runs": [
            {
                k: r[k]
                for k in (
                    "seed",
                    "tenants",
                    "recall",
                    "precision",
                    "false_per_day_per_25_tenants",
                    "median_time_to_detect_s",
                    "p95_time_to_detect_s",
                    "median_time_to_detect_s_by_kind",
                    "false_by_kind",
                )
            }
            for r in results
        ],
        "worst_recall": worst_recall,
        "min_precision": min(r["precision"] for r in results),
        "max_false_per_day_per_25_tenants": max(r["false_per_day_per_25_tenants"] for r in results),
        "median_of_median_ttd_s": round(statistics.median(ttd), 1) if ttd else None,
        "max_median_ttd_s": round(max(ttd), 1) if ttd else None,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
