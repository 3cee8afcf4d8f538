"""Fleet-scale benchmark (issue 7): the program on the mock runtime at 100 / 1,000 / 10,000 collectors
from inventory files, against synthetic programs registering the same number of resources.

Reports per-resource cost against the bare runtime (goal <= 1.25x) and against the floor set by
pulumi_aws's typed classes (`bench/synthetic_fleet`), peak memory (peak RSS), and the size of the config
string the engine would pass (`PULUMI_CONFIG`, capped at 128 KiB by Linux). Each measurement runs in a
fresh subprocess so one measurement's memory and caches do not leak into the next.

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


SYNTHETIC_PROGRAM = Path(__file__).resolve().parent / "synthetic_fleet"
KINDS = ("program", "bare", "plain", "typed")


def _measure_program(project_dir: Path) -> dict[str, Any]:
    from preflight.mock_runtime import evaluate_stack, language_host_config_json, load_stack_config_file

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


def _measure_synthetic(kind: str, resources: int) -> dict[str, Any]:
    """`resources` registrations of `bench/synthetic_fleet` (`bare`, `plain` or `typed`), no program logic."""
    from preflight.mock_runtime import evaluate_stack

    config = {"aws:region": "eu-west-1", "bench:kind": kind, "bench:resources": str(resources)}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        evaluated = evaluate_stack(STACK, Path(tmp), config=config, program_dir=SYNTHETIC_PROGRAM)
        seconds = time.perf_counter() - start
    if len(evaluated.resources) != resources:
        raise RuntimeError(f"{kind}: registered {len(evaluated.resources)} resources, expected {resources}")
    return {"seconds": seconds, "peak_mib": _peak_rss_mib(), "resources": resources}


def _warm_up() -> None:
    """Pay one-off costs before timing, alike for every kind: imports (pulumi_aws loads each service
    module on first use), pulumi's per-class type caches. Evaluating the program once for one collector
    does all of it, so every kind starts from the same interpreter state (and the same heap)."""
    from preflight.mock_runtime import evaluate_stack

    with tempfile.TemporaryDirectory() as tmp:
        write_fleet(Path(tmp), 1)
        evaluate_stack(STACK, Path(tmp))


def _peak_rss_mib() -> float:
    """Peak resident set size of this (fresh) process, MiB: no tracing overhead on the timings."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(kind: str, size: int, cold: bool) -> None:
    """One measurement in this fresh process. `cold`: the program alone, first thing the interpreter
    does (what `pulumi up` pays, imports included); otherwise after `_warm_up`, for per-resource ratios."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if not cold:
        _warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "program":
            write_fleet(Path(tmp), size)
            result = _measure_program(Path(tmp))
        else:
            result = _measure_synthetic(kind, size)
    print(json.dumps(result))


def run_child(kind: str, size: int, *, cold: bool = False) -> dict[str, Any]:
    """Measure `kind` (`program`: `size` collectors; else: `size` registrations) in a fresh process."""
    command = [sys.executable, "-m", "bench.fleet_scale", "--child", kind, str(size)]
    if cold:
        command.append("--cold")
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), args.cold)
        return
    rows = []
    for size in args.sizes:
        program = run_child("program", size)
        n = program["resources"]
        per = {"program": program["seconds"] / n * 1e3}
        peak = {"program": program["peak_mib"]}
        for kind in ("bare", "plain", "typed"):
            measured = run_child(kind, n)
            per[kind], peak[kind] = measured["seconds"] / n * 1e3, measured["peak_mib"]
        rows.append(
            f"| {size:,} | {n:,} | {program['seconds']:.2f} | {per['program']:.3f} | {per['bare']:.3f} | "
            f"{per['plain']:.3f} | {per['typed']:.3f} | **{per['program'] / per['bare']:.2f}x** | "
            f"{per['typed'] / per['plain']:.2f}x | {per['program'] / per['typed']:.2f}x | "
            f"{peak['program']:.0f} | {peak['bare']:.0f} | {peak['typed']:.0f} | "
            f"{program['config_bytes']:,} |"
        )
        print(rows[-1], flush=True)
    body = (
        "The program evaluated on Pulumi's mock runtime from inventory files"
        f" ({COLLECTORS_PER_SITE} collectors per site file, {METERS_PER_COLLECTOR} meters each), against"
        " synthetic programs (`bench/synthetic_fleet`) registering the same number of resources on the same"
        " mock runtime (`preflight.mock_runtime`, same mocks and recorder), each in a fresh process after the"
        " same warm-up (one 1-collector evaluation: imports, type caches):\n\n"
        "- **bare**: plain `pulumi.CustomResource`s, two small inputs, no parent (the goal's baseline);\n"
        "- **plain**: the program's per-collector resources (thing + group membership, same type tokens and"
        " inputs, parented to a component) as plain `pulumi.CustomResource`s;\n"
        "- **typed**: the same through pulumi_aws's typed classes and `*Args`, which the program must use"
        " (a misspelt argument raises): the floor for any program registering these resources.\n\n"
        "Goal: program per-resource cost <= 1.25x bare. *typed/plain* is the cost of pulumi_aws's typed"
        " classes alone; *program/typed* is the program's own overhead over that floor (config and inventory"
        " parsing, the other components, `depends_on`, outputs). Peak memory = peak RSS of the measuring"
        " process (interpreter, imports and warm-up included). `PULUMI_CONFIG` = the config JSON the engine"
        " would pass (Linux caps one environment string at 128 KiB). Where the time goes (Pulumi's runtime"
        " and Python's cyclic GC dominate every kind; what the program adds): docs/infra.md,"
        " \"Evaluation cost at fleet scale\".\n\n"
        "| collectors | resources | program s | program ms/res | bare ms/res | plain ms/res | typed ms/res | "
        "program/bare | typed/plain | program/typed | program peak MiB | bare peak MiB | typed peak MiB | "
        "PULUMI_CONFIG bytes |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows)
    )
    write_section("fleet_scale", body)


if __name__ == "__main__":
    main()
