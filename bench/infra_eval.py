"""Evaluation time of the Pulumi program on the mock runtime for 10 / 100 / 1,000 collectors (issue 2,
goal <= 5 s at 1,000 collectors on this machine), next to the bare mock runtime registering the same
number of resources in the same run. Each measurement in a fresh process (see `bench.fleet_scale`).
"""

from __future__ import annotations

from bench.fleet_scale import _run_child
from bench.report import write_section

SIZES = (10, 100, 1_000)


def main() -> None:
    rows = []
    for size in SIZES:
        program = _run_child("program", size)
        bare = _run_child("bare", program["resources"])
        ratio = program["seconds"] / bare["seconds"]
        rows.append(f"| {size:,} | {program['resources']:,} | {program['seconds']:.2f} | "
                    f"{bare['seconds']:.2f} | {ratio:.2f}x |")
        print(rows[-1], flush=True)
    write_section("infra_eval", (
        "Whole program (config + inventory parsing, components, exports) on Pulumi's mock runtime, with the"
        " `infra.mock_runtime` recorder, vs plain `pulumi.CustomResource`s of the same count. Goal: <= 5 s"
        " at 1,000 collectors.\n\n"
        "| collectors | resources | program s | bare s | ratio |\n|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows)
    ))


if __name__ == "__main__":
    main()
