"""The dataset card (README.md) of the built dataset: YAML ``configs:`` + provenance + usage.

The card is published (``latbench data push``) and rendered as markdown and HTML, while parts of it
come from files anyone can write (a measured device's folder name, its ``meta.json``): names that
follow :data:`latbench.text.NAME_PATTERN` are shown as code, anything else (free text such as a CPU
model, or a name that breaks the rule) goes through :func:`latbench.text.md_text`, so nothing from
the data becomes markup.
"""

from __future__ import annotations

import yaml

from latbench.measure import profiler
from latbench.text import is_safe_name, md_text


def render(info: dict, configs: list[tuple[str, str]], task_configs: list[tuple[str, dict]], devices: list[dict]) -> str:
    yaml_configs = [{"config_name": name, "data_files": [{"split": "train", "path": path}]} for name, path in configs]
    yaml_configs += [
        {"config_name": name, "data_files": [{"split": s, "path": p} for s, p in splits.items()]} for name, splits in task_configs
    ]
    licenses = sorted({s["license"].lower() for s in info["sources"]})
    header = {
        "pretty_name": "latbench: neural-network inference latency across devices",
        "license": licenses[0] if len(licenses) == 1 else "other",
        "tags": ["latency", "neural-architecture-search", "hardware-aware-nas", "benchmark"],
        "size_categories": ["100K<n<1M"],
        "configs": yaml_configs,
    }
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).rstrip(),
        "---",
        "",
        "# latbench latency dataset",
        "",
        "Measured inference latency (milliseconds, per forward pass at the device's batch size) of "
        "neural-network architectures from three search spaces on many devices, converted by "
        "`latbench data build` from the pinned upstream files listed below.",
        "",
        f"- dataset version: `{info['dataset_version']}`",
        "- content hash (sha256 over arch strings, device names, float64 latencies, kernel tables, device metadata; "
        f"not over file bytes): `{info['content_hash']}`",
        f"- built by latbench {info['latbench_version']} at {info['built_at']}",
        "",
        "## Configs",
        "",
        "| config | what | rows |",
        "|---|---|---|",
    ]
    for space, c in info["spaces"].items():
        lines.append(
            f"| {_name(space)} | one row per (arch, device): `space, arch_id, arch, device, latency_ms, source` | "
            f"{c['rows']:,} ({c['archs']:,} archs x {len(c['devices'])} devices) |"
        )
        lines.append(
            f"| {_name('archs-' + space)} | per-arch features: `arch_id, arch, flops_m, params_m, activations_m, "
            f"reference, onehot, adjacency, node_features` | {c['archs']:,} |"
        )
    for name, _path in configs:
        if name.startswith("kernels-"):
            lines.append(
                f"| {_name(name)} | per-layer kernel latencies of the profiler-measured devices: "
                "`device, arch_id, layer, op, h, cin, cout, kernel, stride, groups, latency_ms` "
                "(`layer` indexes the space's layer list) | see file |"
            )
    lines.append(
        "| `devices` | device metadata: "
        "`device, family, hardware, batch_size, precision, source, origin, description` | "
        f"{len(devices)} |"
    )
    if task_configs:
        lines.append(
            f"| task ids ({_name(task_configs[0][0])}, ...) | splits `train` (source and validation devices) and "
            "`test` (target devices); columns `device_role` and `arch_role` (source-sample / query / eval / unused) | "
            f"{len(task_configs)} tasks |"
        )
    lines += [
        "",
        "```python",
        "import datasets, latbench",
        'ds = datasets.load_dataset(str(latbench.data_dir()), "nb201")',
        "```",
        "",
        "## Units and conventions",
        "",
        "- `latency_ms`: milliseconds, exactly the upstream value (float64); some upstream devices report whole milliseconds.",
        "- `arch_id`: the upstream index (NAS-Bench-201: the official index; FBNet/OFA: HELP's sample order).",
        "- `flops_m`: million multiply-accumulates of conv and linear layers (the NAS-Bench-201 counter's convention); "
        "`params_m`: million learnable parameters; `activations_m`: million output activation elements summed over layers.",
        "- `reference`: the 10 hardware-embedding reference archs of HELP.",
        "- Device names encode the batch size as a suffix where one applies (`1080ti_32` = batch 32).",
        "",
        "## Provenance",
        "",
    ]
    for s in info["sources"]:
        if s["name"] == "latbench-measured":
            lines += _measured_section(s)
            continue
        commit = s["files"][0]["url"].split("/")[5] if s["files"] else "?"
        lines += [
            f"### {s['title']}",
            "",
            f"- upstream: {s['homepage']} at commit `{commit}`, licence {s['license']}",
            "- files (sha256 verified at build time):",
            "",
        ]
        lines += [f"  - `{f['path']}` `{f['sha256']}`" for f in s["files"]]
        lines += ["", "Cite:", "", "```bibtex", s["citation"], "```", ""]
    lines += ["## Devices", "", "| device | family | hardware | batch | origin |", "|---|---|---|---|---|"]
    lines += [
        f"| {_name(d['device'])} | {md_text(d['family'])} | {md_text(d['hardware'])} | {_batch(d['batch_size'])} | "
        f"{md_text(d['origin'])} |"
        for d in sorted(devices, key=lambda d: str(d["device"]))
    ]
    return "\n".join(lines) + "\n"


def _name(name) -> str:
    """A name as code when it follows the naming rule (``space/device`` paths: each part), else as escaped text."""
    text = str(name)
    return f"`{text}`" if all(is_safe_name(part) for part in text.split("/")) else md_text(text)


def _batch(value) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else ""


def _measured_section(source: dict) -> list[str]:
    """Provenance and measurement protocol of the devices measured by ``latbench profile``."""
    lines = [
        "### latbench profiler measurements",
        "",
        "Devices named `<hardware>-<runtime>[-t<threads>]-bs<batch>-<precision>` were measured by "
        "`latbench profile` (each device folder's `meta.json` has the hardware, library versions and settings). "
        "They cover a sample of the space (the reference archs first, then a seeded sample): "
        "archs a device did not measure have no row.",
        "",
        "Measurement protocol:",
        "",
    ]
    doc = profiler.__doc__.split("Measurement protocol", 1)[1].split("Crash safety", 1)[0]
    lines += [doc.split(":", 1)[1].strip(), "", "Devices:", ""]
    lines += [f"- {_name(f['path'])}: {int(f['archs'])} archs" for f in source["files"]]
    return lines + [""]
