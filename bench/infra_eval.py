"""Evaluation time of the Pulumi program on the mock runtime for 10 / 100 / 1,000 collectors (issue 2,
goal <= 5 s at 1,000 collectors on this machine), next to the bare mock runtime registering the same
number of resources in the same run. Each measurement in a fresh process (see `bench.fleet_scale`).

`cold` is what `pulumi up` pays: the program is the first thing the interpreter runs, so importing
pulumi, pulumi_aws (whose service modules load on first use) and the program is included; the goal
is checked against it. `warm` is measured after the same warm-up as the bare program, for the ratio.
"""

from __future__ import annotations

import argparse

from bench.fleet_scale import run_child
from bench.report import write_section

SIZES = (10, 100, 1_000)
GOAL_S = 5.0


def main() -> None:
    rows = []
    for size in SIZES:
        cold = run_child("program", size, cold=True)
        warm = run_child("program", size)
        bare = run_child("bare", warm["resources"])
        verdict = "yes" if cold["seconds"] <= GOAL_S else "**no**"
        ratio = warm["seconds"] / bare["seconds"]
        rows.append(f"| {size:,} | {warm['resources']:,} | {cold['seconds']:.2f} | {verdict} | "
                    f"{warm['seconds']:.2f} | {bare['seconds']:.2f} | {ratio:.2f}x |")
        print(rows[-1], flush=True)
    write_section("infra_eval", (
        "Whole program (config + inventory parsing, components, exports) on Pulumi's mock runtime, with the"
        " `preflight.mock_runtime` recorder. **cold**: the program run first in a fresh interpreter, imports"
        " of pulumi, pulumi_aws and `infra` included (what `pulumi up` pays); goal: <= 5 s at 1,000"
        " collectors. **warm**: after a 1-collector warm-up, vs plain `pulumi.CustomResource`s of the same"
        " count measured after the same warm-up (per-resource detail and the typed-class floor:"
        " `fleet_scale` below).\n\n"
        "| collectors | resources | cold s | <= 5 s | warm s | bare s | warm/bare |\n"
        "|---:|---:|---:|:---:|---:|---:|---:|\n"
        + "\n".join(rows)
    ))


if __name__ == "__main__":
    argparse.ArgumentParser(prog="python -m bench.infra_eval", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
