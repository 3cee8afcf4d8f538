"""Fleet-scale benchmark (issue 7): the program on the mock runtime at 100 / 1,000 / 10,000 collectors
from inventory files, against the bare mock runtime registering the same number of resources.

Reports per-resource cost (ratio to the bare runtime; goal <= 1.25x), peak memory (peak RSS, both),
and the size of the config string the engine would pass (`PULUMI_CONFIG`, capped at 128 KiB by Linux).
Each measurement runs in a fresh subprocess so one size's memory does not leak into the next.

Also home of `write_fleet`, the synthetic inventory generator the tests and `bench.infra_eval` use.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.report import write_section

STACK = "fleet"
SIZES = (100, 1_000, 10_000)
COLLECTORS_PER_SITE = 200
METERS_PER_COLLECTOR = 2


def fleet_shape(collectors: int, per_site: int = COLLECTORS_PER_SITE) -> list[int]:
    """Collectors per site: full sites of `per_site`, the remainder in a last one."""
    full, rest = divmod(collectors, per_site)
    return [per_site] * full + ([rest] if rest else [])


def write_fleet(
    project_dir: Path,
    collectors: int,
    *,
    inline: bool = False,
    per_site: int = COLLECTORS_PER_SITE,
    meters: int = METERS_PER_COLLECTOR,
) -> Path:
    """A project folder with `Pulumi.fleet.yaml` and (unless `inline`) one inventory file per site."""
    sites = []
    for s, count in enumerate(fleet_shape(collectors, per_site)):
        site = f"site-{s:03d}"
        sites.append(
            {
                "name": site,
                "collectors": [
                    {
                        "name": f"edge-{c:04d}",
                        "meters": [
                            {
                                "asset": f"meter-{m}",
                                "breaker": f"MCC-{c % 40} F{m}",
                                "host": f"pm500-{c:04d}-{m}.{site}.example",
                            }
                            for m in range(meters)
                        ],
                    }
                    for c in range(count)
                ],
            }
        )
    config: dict[str, Any] = {"aws:region": "eu-west-1", "pm500:kinesis": {"capacityMode": "ON_DEMAND"}}
    if inline:
        config["pm500:sites"] = sites
    else:
        inventory = project_dir / "inventory"
        inventory.mkdir(parents=True, exist_ok=True)
        for site_doc in sites:
            (inventory / f"{site_doc['name']}.yaml").write_text(yaml.safe_dump(site_doc, sort_keys=False))
        config["pm500:inventory"] = "inventory/*.yaml"
    project_dir.mkdir(parents=True, exist_ok=True)
    stack_file = project_dir / f"Pulumi.{STACK}.yaml"
    stack_file.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return stack_file


def _measure_program(project_dir: Path) -> dict[str, Any]:
    from infra.mock_runtime import evaluate_stack, language_host_config_json, load_stack_config_file

    config, _ = load_stack_config_file(STACK, project_dir)
    start = time.perf_counter()
    evaluated = evaluate_stack(STACK, project_dir)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_mib": _peak_rss_mib(),
        "resources": len(evaluated.resources),
        "things": sum(len(v) for v in evaluated.outputs["thingNames"].values()),
        "config_bytes": len(language_host_config_json(config).encode()),
    }


def _measure_bare(resources: int) -> dict[str, Any]:
    """The same number of registrations with no program logic: `resources` plain custom resources."""
    import pulumi

    from infra.mock_runtime import evaluate_stack

    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / "bare"
        program.mkdir()
        (program / "__main__.py").write_text(
            "import pulumi\n"
            "class Bare(pulumi.CustomResource):\n"
            "    def __init__(self, name, props):\n"
            "        super().__init__('bare:index:Thing', name, props)\n"
            f"for i in range({resources}):\n"
            "    Bare(f'r{i}', {'name': f'r{i}', 'attributes': {'site': 'x', 'env': 'y'}})\n"
        )
        assert pulumi  # the bare program imports it itself; imported here so import time is excluded
        start = time.perf_counter()
        evaluate_stack(STACK, Path(tmp), config={"aws:region": "eu-west-1"}, program_dir=program)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mib": _peak_rss_mib(), "resources": resources}


def _peak_rss_mib() -> float:
    """Peak resident set size of this (fresh) process, MiB: no tracing overhead on the timings."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(kind: str, size: int) -> None:
    # One-off import cost (pulumi_aws is large) is paid before timing, by both kinds alike: the
    # comparison is per resource.
    import pulumi_aws  # noqa: F401

    import infra.data_routes
    import infra.extras
    import infra.provisioning
    import infra.registry  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        if kind == "program":
            write_fleet(Path(tmp), size)
            result = _measure_program(Path(tmp))
        else:
            result = _measure_bare(size)
    print(json.dumps(result))


def _run_child(kind: str, size: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.fleet_scale", "--child", kind, str(size)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return
    rows = []
    for size in args.sizes:
        program = _run_child("program", size)
        bare = _run_child("bare", program["resources"])
        per_prog = program["seconds"] / program["resources"] * 1e3
        per_bare = bare["seconds"] / bare["resources"] * 1e3
        rows.append(
            f"| {size:,} | {program['resources']:,} | {program['seconds']:.2f} | {per_prog:.3f} | "
            f"{bare['seconds']:.2f} | {per_bare:.3f} | {per_prog / per_bare:.2f}x | "
            f"{program['peak_mib']:.0f} | {bare['peak_mib']:.0f} | {program['config_bytes']:,} |"
        )
        print(rows[-1], flush=True)
    body = (
        f"Program evaluated on Pulumi's mock runtime from inventory files ({COLLECTORS_PER_SITE} collectors"
        f" per site file, {METERS_PER_COLLECTOR} meters each) vs a bare program registering the same number"
        " of plain `pulumi.CustomResource`s on the same mock runtime, each in a fresh process."
        " Goal: per-resource cost <= 1.25x bare. "
        "Peak memory = peak RSS of the measuring process (interpreter and imports included)."
        " `PULUMI_CONFIG` = the config JSON the engine would pass "
        "(Linux caps one environment string at 128 KiB).\n\n"
        "| collectors | resources | program s | program ms/resource | bare s | bare ms/resource | ratio | "
        "program peak MiB | bare peak MiB | PULUMI_CONFIG bytes |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows)
    )
    write_section("fleet_scale", body)


if __name__ == "__main__":
    main()
