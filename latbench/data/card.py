"""The dataset card (README.md of the built dataset): a Hugging Face dataset card, checked offline.

The card is rendered from ``templates/dataset_card.md`` with :class:`huggingface_hub.DatasetCard`
and :class:`huggingface_hub.DatasetCardData` (the YAML header: licences, tags, task category, size
category and one ``configs:`` entry per config, which is what ``datasets.load_dataset(folder,
name)`` and the Hub read). Its body documents each source (licence, upstream commit, sha256 of
every file, citation), the measurement protocol of latbench's own devices with the numbers from
each device's ``meta.json``, every device's test-retest noise, and the known limitations, computed
from the data at build time (:func:`latency_summary`).

``latbench data push`` publishes this card, so :func:`check` validates it without network (the
Hub's own ``DatasetCard.validate`` is an HTTP call): the YAML parses, has no duplicate keys and
only keys the Hub's dataset-card metadata knows, its values are in the Hub's vocabularies, and
every ``configs`` entry passes ``datasets``' own check and names files that exist.

Parts of the card come from files anyone can write (a measured device's folder name, its
``meta.json``): names that follow :data:`latbench.text.NAME_PATTERN` are shown as code, anything
else (free text such as a CPU model, or a name that breaks the rule) goes through
:func:`latbench.text.md_text`, so nothing from the data becomes markup.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from latbench.text import is_safe_name, md_text

TEMPLATE = Path(__file__).parent / "templates" / "dataset_card.md"
#: A latency below this share of its device's median counts as near zero (a limitation the card lists).
NEAR_ZERO_SHARE = 0.1
#: Licence ids of the Hub's dataset-card vocabulary that a latency source may carry (lower-case SPDX).
HUB_LICENSES = frozenset(
    {"mit", "apache-2.0", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0"}
    | {"cc-by-nc-sa-4.0", "odc-by", "odbl", "pddl", "gpl-3.0", "lgpl-3.0", "unlicense", "other", "unknown"}
)
#: The Hub task category of latency prediction from architecture features.
TASK_CATEGORIES = ("tabular-regression",)
#: Top-level YAML keys the Hub's dataset cards know besides DatasetCardData's own fields.
EXTRA_KEYS = frozenset({"tags", "configs", "license_name", "license_link", "license_details", "dataset_info", "viewer"})
SIZE_CATEGORIES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B")
#: Substrings of a ``hardware`` string that mark a data-centre part (for the family check).
SERVER_PARTS = {"Xeon": "server CPU", "EPYC": "server CPU", "Tesla": "server GPU", "V100": "server GPU", "A100": "server GPU"}
HW_NAS_BENCH_CITATION = (
    "@inproceedings{li2021hwnasbench, title={{HW-NAS-Bench}: Hardware-Aware Neural Architecture Search Benchmark}, "
    "author={Li, Chaojian and Yu, Zhongzhi and Fu, Yonggan and Zhang, Yongan and Zhao, Yang and You, Haoran and "
    "Yu, Qixuan and Wang, Yue and Hao, Cong and Lin, Yingyan}, booktitle={ICLR}, year={2021}}"
)
UNKNOWN = "unknown"
#: ``origin`` of the devices ``latbench profile`` measured (the protocol section is about them).
PROFILE_ORIGIN = "latbench profile"
MEASURED_SOURCE = "latbench-measured"


# ------------------------------------------------------------------------------ build-time summaries
def latency_summary(values: np.ndarray) -> dict:
    """What the limitations section needs of one device's latencies (NaN = not measured)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"n": 0}
    median = float(np.median(v))
    return {
        "n": int(len(v)),
        "min": float(v.min()),
        "median": median,
        "near_zero": int((v < NEAR_ZERO_SHARE * median).sum()),
        "whole_ms": bool(np.all(v == np.round(v))),
        "distinct": int(len(np.unique(v))),
    }


# ----------------------------------------------------------------------------------------- render
def card_data(info: dict, configs: Sequence, task_configs: Sequence, rows: int | None = None):
    """The YAML header as :class:`huggingface_hub.DatasetCardData`."""
    from huggingface_hub import DatasetCardData

    yaml_configs = [{"config_name": name, "data_files": [{"split": "train", "path": path}]} for name, path in configs]
    yaml_configs += [
        {"config_name": name, "data_files": [{"split": s, "path": p} for s, p in splits.items()]} for name, splits in task_configs
    ]
    spaces = list(info.get("spaces") or {})
    for c in yaml_configs:
        if spaces and c["config_name"] == spaces[0]:
            c["default"] = True  # load_dataset(folder) without a name loads the first space
    licenses, extra = _licenses(info.get("sources") or [])
    if rows is None:
        rows = sum(int(c.get("rows", 0)) for c in (info.get("spaces") or {}).values())
    return DatasetCardData(
        pretty_name="latbench: neural-network inference latency across devices",
        license=licenses[0] if len(licenses) == 1 else licenses,
        task_categories=list(TASK_CATEGORIES),
        size_categories=[size_category(rows)],
        tags=["latency", "latency-prediction", "neural-architecture-search", "hardware-aware-nas", "benchmark"],
        configs=yaml_configs,
        **extra,
    )


def size_category(rows: int) -> str:
    """The Hub's size bin of a dataset with ``rows`` examples."""
    for i, cat in enumerate(SIZE_CATEGORIES):
        if rows < 1000 * 10**i:
            return cat
    return SIZE_CATEGORIES[-1]


def _licenses(sources: list[dict]) -> tuple[list[str], dict]:
    ids = sorted({str(s.get("license", "")).split()[0].lower() for s in sources if s.get("license")}) or [UNKNOWN]
    if all(i in HUB_LICENSES for i in ids):
        return ids, {}
    # a licence the Hub has no id for: "other", named and linked (the Hub requires both)
    odd = next(s for s in sources if str(s.get("license", "")).split()[0].lower() not in HUB_LICENSES)
    name = re.sub(r"[^a-z0-9.-]+", "-", str(odd["license"]).lower()).strip("-") or "other"
    return ["other"], {"license_name": name, "license_link": str(odd.get("homepage") or "LICENSE")}


def render(
    info: dict,
    configs: Sequence[tuple[str, str]],
    task_configs: Sequence[tuple[str, dict]],
    devices: list[dict],
    *,
    latency: dict | None = None,
    kernel_rows: dict | None = None,
) -> str:
    """The card's text. ``latency``: space -> device -> :func:`latency_summary` (the limitations);
    ``kernel_rows``: config name -> rows of each ``kernels-*`` config."""
    from huggingface_hub import DatasetCard

    sources = info.get("sources") or []
    measured = [f for s in sources if s.get("name") == MEASURED_SOURCE for f in s.get("files") or []]
    card = DatasetCard.from_template(
        card_data(info, configs, task_configs),
        template_path=str(TEMPLATE),
        n_spaces=_count(len(info.get("spaces") or {}), "search space"),
        n_devices=len(devices),
        dataset_version=_code(info.get("dataset_version", "")),
        content_hash=_code(info.get("content_hash", "")),
        latbench_version=md_text(info.get("latbench_version", "")),
        built_at=md_text(info.get("built_at", "")),
        synthetic=md_text((info.get("synthetic") or {}).get("note", "")),
        missing_sources=", ".join(_name(s) for s in info.get("missing_sources") or []),
        default_config=next(iter(info.get("spaces") or {"nb201": 0})),
        config_rows="\n".join(_config_rows(info, configs, task_configs, devices, kernel_rows or {})),
        sources="\n".join(_source_sections(sources)),
        protocol="\n".join(_protocol(measured, devices)),
        device_rows="\n".join(_device_row(d) for d in sorted(devices, key=lambda d: str(d.get("device")))),
        measured_devices="\n".join(_measured_table(measured, devices)),
        limitations="\n".join(f"- {x}" for x in limitations(info, devices, latency or {}, measured)),
        hw_nas_bench_citation=HW_NAS_BENCH_CITATION if any("HW-NAS-Bench" in str(d.get("origin")) for d in devices) else "",
    )
    return re.sub(r"\n{3,}", "\n\n", str(card)).rstrip() + "\n"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _name(name) -> str:
    """A name as code when it follows the naming rule (``space/device`` paths: each part), else as escaped text."""
    text = str(name)
    return f"`{text}`" if all(is_safe_name(part) for part in text.split("/")) else md_text(text)


_PLAIN_URL = re.compile(r"https://[A-Za-z0-9./_-]+")
_PLAIN_CODE = re.compile(r"[A-Za-z0-9._/+-]+")


def _code(text) -> str:
    """A path, hash or version as code when it is plain (no character a code span would show wrongly),
    else as inert text."""
    return f"`{text}`" if isinstance(text, str) and _PLAIN_CODE.fullmatch(text) else md_text(text)


def _link(url) -> str:
    """A plain https URL as an autolink; anything else as inert text."""
    return f"<{url}>" if isinstance(url, str) and _PLAIN_URL.fullmatch(url) else md_text(url)


def _num(value, fmt: str = "{}") -> str:
    """A number from a file as text, or "unknown" (never markup: only real numbers get through)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return UNKNOWN
    return fmt.format(value)


def _batch(value) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else ""


def _config_rows(info, configs, task_configs, devices, kernel_rows) -> list[str]:
    lines = []
    for space, c in (info.get("spaces") or {}).items():
        lines.append(
            f"| {_name(space)} | one row per measured (arch, device): `space, arch_id, arch, device, latency_ms, source` | "
            f"{c['rows']:,} ({c['archs']:,} archs, {len(c['devices'])} devices) |"
        )
        lines.append(
            f"| {_name('archs-' + space)} | per-arch features: `arch_id, arch, flops_m, params_m, activations_m, "
            f"reference, onehot, adjacency, node_features` | {c['archs']:,} |"
        )
    for name, _path in configs:
        if str(name).startswith("kernels-"):
            rows = kernel_rows.get(name)
            lines.append(
                f"| {_name(name)} | per-layer kernel latencies of the profiler-measured devices: "
                "`device, arch_id, layer, op, h, cin, cout, kernel, stride, groups, latency_ms` "
                f"(`layer` indexes the space's layer list) | {f'{rows:,}' if isinstance(rows, int) else 'see file'} |"
            )
    lines.append(
        "| `devices` | device metadata: `device, family, hardware, batch_size, precision, source, origin, description` | "
        f"{len(devices)} |"
    )
    if task_configs:
        lines.append(
            f"| one per task ({_name(task_configs[0][0])}, ...) | splits `train` (source and validation devices) and "
            "`test` (target devices); columns `device_role` and `arch_role` (source-sample / query / eval / unused) | "
            f"{len(task_configs)} tasks |"
        )
    return lines


def _source_sections(sources: list[dict]) -> list[str]:
    lines = []
    for s in sources:
        if s.get("name") == MEASURED_SOURCE:
            lines += [
                "### Measured devices (`latbench profile`, `latbench data import`)",
                "",
                f"- licence: {md_text(s.get('license', UNKNOWN))}; latbench's own devices were measured with "
                "`latbench profile` (protocol below); each device folder's `meta.json` records the hardware, library "
                "versions and settings",
                f"- devices: {len(s.get('files') or [])} (space, device) pairs, listed under Devices",
                "",
            ]
            continue
        files = s.get("files") or []
        commit = s.get("commit") or (files[0]["url"].split("/")[5] if files and "url" in files[0] else UNKNOWN)
        lines += [
            f"### {md_text(s.get('title', s.get('name', '')))}",
            "",
            f"- upstream: {_link(s.get('homepage', ''))} at commit {_code(commit)}",
            f"- licence: {md_text(s.get('license', UNKNOWN))}",
        ]
        if files:
            lines += [
                "",
                f"<details><summary>{len(files)} files, each checked against its size and sha256 before it was read</summary>",
                "",
                "| file | bytes | sha256 |",
                "|---|---|---|",
            ]
            lines += [f"| {_code(f['path'])} | {_num(f.get('size'), '{:,}')} | {_code(f['sha256'])} |" for f in files]
            lines += ["", "</details>"]
        else:
            lines += ["- files: none recorded (this build did not read the upstream files)"]
        if s.get("citation"):
            lines += ["", "```bibtex", str(s["citation"]).replace("```", "'''"), "```"]
        lines.append("")
    return lines


def _settings(f: dict) -> dict:
    return f.get("settings") if isinstance(f.get("settings"), dict) else {}


def _values(measured: list[dict], key: str, fmt: str = "{}") -> str:
    """One setting over every measured device: its value, a range, and/or "unknown"."""
    got = [_settings(f).get(key) for f in measured]
    known = sorted({v for v in got if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)})
    if not known:
        return UNKNOWN
    text = fmt.format(known[0]) if len(known) == 1 else f"{fmt.format(known[0])}–{fmt.format(known[-1])} (per device below)"
    some_unknown = any(_num(v) == UNKNOWN for v in got)
    return text + (" (unknown for some devices)" if some_unknown else "")


def _profiled(measured: list[dict]) -> list[dict]:
    return [f for f in measured if _settings(f).get("origin", PROFILE_ORIGIN) == PROFILE_ORIGIN]


def _protocol(measured: list[dict], devices: list[dict]) -> list[str]:
    origins = sorted({str(d.get("origin")) for d in devices if d.get("origin") and d.get("source") != MEASURED_SOURCE})
    imported = [f for f in measured if f not in _profiled(measured)]
    measured = _profiled(measured)
    lines = []
    if origins:
        lines += [
            f"**Upstream devices** (origin {', '.join(md_text(o) for o in origins)}): measured by their authors "
            "with their own protocols (see the papers cited above); the upstream files do not record warm-up or "
            "repeat counts, and no test-retest numbers are published for them.",
            "",
        ]
    if imported:
        who = sorted({md_text(_settings(f).get("origin", UNKNOWN)) for f in imported})
        lines += [
            f"**Imported devices** ({len(imported)}, `latbench data import`; origin {', '.join(who)}): measured elsewhere "
            "with their owners' protocol; the table below shows the settings their `meta.json` states, and unknown "
            "for the rest.",
            "",
        ]
    if not measured:
        return lines + ["This build has no devices measured by `latbench profile`."]
    share = _values(measured, "contention_share", "{:.0%}")
    lines += [
        "**latbench-measured devices** (`latbench profile`, protocol version "
        f"{_values(measured, 'protocol_version')}); the numbers are read from each device's `meta.json`:",
        "",
        "- the arch is built with the space's PyTorch builder, in eval mode, with random weights (latency does not "
        "depend on the weight values of these dense ops);",
        f"- inputs: {_values(measured, 'rotate_inputs')} different random tensors of the space's input shape, used in "
        "turn, so no run sees the same input twice in a row;",
        f"- {_values(measured, 'warmup')} untimed forward passes, then {_values(measured, 'repeats')} timed ones, each "
        "timed alone (`perf_counter_ns` on CPU; CUDA events after a synchronise on GPU; with CUDA graphs each timed run "
        "is one graph replay);",
        "- the latency is the median of the timed runs (robust to an occasional preempted run, so none is discarded);",
        "- ONNX Runtime devices: the model exported with `torch.onnx.export`, run by the CPU execution provider with "
        "as many intra-op threads as the device's thread count and every graph optimisation on; int8 is static QDQ "
        "quantisation, per tensor, calibrated on the same random inputs;",
        f"- kernel breakdown (the `kernels-*` configs; eager PyTorch on CPU only): {_values(measured, 'kernel_passes')} "
        "extra forward passes with a timer around every leaf module, each mapped to the space's layer list by its "
        "signature; element-wise adds between modules are not in the breakdown;",
        f"- contention guard: a timed block is measured again while other processes used more than {share} of the CPU "
        f"during it, for up to {_values(measured, 'contention_max_wait_s', '{:g}')} s per arch; an arch that never got a "
        "quiet window is kept and flagged `contended` in the device's files.",
    ]
    return lines


def _device_row(d: dict) -> str:
    return (
        f"| {_name(d.get('device'))} | {md_text(d.get('family', ''))} | {md_text(d.get('hardware', ''))} | "
        f"{_batch(d.get('batch_size'))} | {md_text(d.get('origin', ''))} |"
    )


def _retest(f: dict, rows: dict) -> tuple[str, str, str]:
    """(Spearman, median relative difference, archs) of a measured device: its ``retest.json``, else the
    ``devices`` table's ``retest_*`` columns, else unknown."""
    r = f.get("retest") if isinstance(f.get("retest"), dict) else {}
    row = rows.get(str(f.get("path", "")).split("/")[-1], {})
    rho = r.get("spearman", row.get("retest_spearman"))
    diff = r.get("median_abs_rel_diff", row.get("retest_median_rel_diff"))
    return _num(rho, "{:.3f}"), _num(diff, "{:.1%}"), _num(r.get("archs"))


def _measured_table(measured: list[dict], devices: list[dict]) -> list[str]:
    if not measured:
        return []
    rows = {str(d.get("device")): d for d in devices}
    lines = [
        "Measured by latbench, with their settings and test-retest noise (the same archs measured again later: "
        "Spearman between the two runs, and the median relative difference of their latencies):",
        "",
        "| space/device | archs | hardware | runtime | threads | batch | precision | warm-up | timed runs | inputs "
        "| kernel passes | test-retest Spearman | median rel. diff. (archs) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in measured:
        s = _settings(f)
        rho, diff, n = _retest(f, rows)
        hardware = s.get("hardware") or UNKNOWN
        lines.append(
            f"| {_name(f.get('path', ''))} | {_num(f.get('archs'))} | {md_text(hardware)} | {md_text(s.get('runtime') or UNKNOWN)} "
            f"| {_num(s.get('threads'))} | {_num(s.get('batch'))} | {md_text(s.get('precision') or UNKNOWN)} "
            f"| {_num(s.get('warmup'))} | {_num(s.get('repeats'))} | {_num(s.get('rotate_inputs'))} "
            f"| {_num(s.get('kernel_passes'))} | {rho} | {diff} ({n}) |"
        )
    return lines


# ---------------------------------------------------------------------------------- limitations
def limitations(info: dict, devices: list[dict], latency: dict, measured: list[dict]) -> list[str]:
    """The known limitations, each computed from this build's data (so they follow the data)."""
    out = []
    near = [
        (space, dev, s)
        for space, devs in sorted(latency.items())
        for dev, s in sorted(devs.items())
        if s.get("n") and s.get("near_zero")
    ]
    if near:
        items = "; ".join(
            f"{_name(f'{space}/{dev}')}: {s['near_zero']:,} of {s['n']:,} archs (minimum {s['min']:.4g} ms, median "
            f"{s['median']:.4g} ms)"
            for space, dev, s in near
        )
        out.append(
            f"**Near-zero latencies** (below {NEAR_ZERO_SHARE:.0%} of the device's median), kept exactly as upstream: "
            f"{items}. On NB201 these are mostly archs whose cell output is disconnected from its input (all-zero cells "
            "a runtime can fold away). MAPE on tasks that target these devices is dominated by them; rank metrics are not."
        )
    coarse = [
        (space, dev, s)
        for space, devs in sorted(latency.items())
        for dev, s in sorted(devs.items())
        if s.get("n") and (s.get("whole_ms") or s.get("distinct", s["n"]) < 0.01 * s["n"])
    ]
    if coarse:
        items = ", ".join(
            f"{_name(f'{space}/{dev}')} ({'whole ms, ' if s['whole_ms'] else ''}{s['distinct']:,} distinct values)"
            for space, dev, s in coarse
        )
        out.append(f"**Coarse values, many ties**: {items}. Rank metrics use average ranks for ties.")
    estimates = sorted(str(d["device"]) for d in devices if "estimate" in str(d.get("hardware", "")).lower())
    if estimates:
        out.append(
            f"**Estimates, not measurements**: {', '.join(_name(d) for d in estimates)} are HW-NAS-Bench's estimates "
            "for a simulated accelerator, not wall-clock timings."
        )
    out += _noise_note(measured, devices)
    out += _family_notes(devices)
    out += _alias_notes(info, devices)
    unbatched = sorted(str(d["device"]) for d in devices if d.get("batch_size") is None)
    if unbatched:
        out.append(
            f"**Unknown batch size**: the source does not state it for {len(unbatched)} devices "
            f"({', '.join(_name(d) for d in unbatched[:6])}{', ...' if len(unbatched) > 6 else ''}); "
            "their `batch_size` is empty (methods that need one assume 1)."
        )
    if info.get("missing_sources"):
        out.append(
            "**Partial build**: this dataset lacks the source(s) "
            f"{', '.join(_name(s) for s in info['missing_sources'])}, so the tasks that need their devices are left out."
        )
    return out or ["None recorded for this build."]


def _noise_note(measured: list[dict], devices: list[dict]) -> list[str]:
    if not measured:
        return []
    rows = {str(d.get("device")): d for d in devices}
    rhos = [float(x) for x in (_retest(f, rows)[0] for f in measured) if x != UNKNOWN]
    cores = sorted({c for c in (_settings(f).get("cpu_cores") for f in measured) if isinstance(c, int)})
    where = f"on machines with {', '.join(map(str, cores))} CPU core(s)" if cores else "on machines of unknown size"
    noise = (
        f"test-retest Spearman {min(rhos):.3f}–{max(rhos):.3f} ({len(rhos)} of {len(measured)} devices known)"
        if rhos
        else "test-retest unknown"
    )
    return [
        f"**Noisy measured devices**: the `{MEASURED_SOURCE}` devices were measured {where} that may run other work "
        f"(a contention guard re-measures, but cannot make a shared machine idle): {noise}. "
        "Differences between them smaller than that noise are not meaningful."
    ]


def _family_notes(devices: list[dict]) -> list[str]:
    wrong: dict[tuple[str, str], list[str]] = {}
    for d in devices:
        hw, fam = str(d.get("hardware", "")), str(d.get("family", ""))
        for marker, right in SERVER_PARTS.items():
            if marker in hw and fam != right:
                wrong.setdefault((fam, right), []).append(str(d["device"]))
                break
    return [
        f"**Family column**: {', '.join(_name(x) for x in sorted(names))} are listed as {md_text(fam)} but are "
        f"{md_text(right)}s (data-centre parts); filter by `hardware` when the distinction matters."
        for (fam, right), names in sorted(wrong.items())
    ]


_BATCH_SUFFIX = re.compile(r"_\d+$")


def _alias_notes(info: dict, devices: list[dict]) -> list[str]:
    """Devices named differently in different spaces though they are the same hardware (HELP's naming)."""
    in_space: dict[str, set[str]] = {}
    for space, c in (info.get("spaces") or {}).items():
        for dev in c.get("devices", []):
            in_space.setdefault(dev, set()).add(space)
    by_hw: dict[str, dict[str, set[str]]] = {}
    for d in devices:
        if d.get("source") == MEASURED_SOURCE:
            continue
        name = str(d["device"])
        prefix = _BATCH_SUFFIX.sub("_*", name)  # titanxp_32 -> titanxp_*
        by_hw.setdefault(str(d.get("hardware", "")), {}).setdefault(prefix, set()).update(in_space.get(name, ()))
    out = []
    for hw, names in sorted(by_hw.items()):
        if len(names) > 1:
            parts = [f"{_pattern(n)} ({', '.join(sorted(sp)) or 'no space'})" for n, sp in sorted(names.items())]
            out.append(
                f"**Same hardware, different names**: {' and '.join(parts)} are all {md_text(hw)}; the upstream names "
                "are kept so that every file maps to its source, so match devices across spaces by the `hardware` column."
            )
    return out


# ------------------------------------------------------------------------------------ validation
def check(text: str, folder: Path | None = None) -> list[str]:
    """Problems of a dataset card's metadata, found offline (``[]``: none); ``folder``: where its data files are.

    What the Hub's validation checks of a dataset card, where it can be checked without network: the
    YAML header parses into :class:`huggingface_hub.DatasetCardData` with no duplicate keys and only
    keys the Hub knows; licence, size category and task category come from the Hub's vocabularies
    (``other`` with a name and a link); every ``configs`` entry passes ``datasets``' own check
    (``MetadataConfigs``), names are unique, at most one is the default, and every file exists.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    problems: list[str] = []
    if not text.startswith("---\n"):
        return ["no YAML metadata block at the top of the card"]
    header = text.split("\n---\n", 1)[0][4:]
    try:
        raw = yaml.load(header, Loader=_NoDuplicates)  # noqa: S506 (a SafeLoader subclass)
        card = DatasetCard(text, ignore_metadata_errors=False)
    except Exception as e:  # yaml.YAMLError, ValueError from huggingface_hub: one line each
        return [f"metadata does not parse: {' '.join(str(e).split())}"]
    if not isinstance(raw, dict):
        return ["metadata is not a mapping"]
    known = set(inspect.signature(DatasetCardData.__init__).parameters) - {"self", "kwargs", "ignore_metadata_errors"}
    problems += [f"unknown metadata key {k!r}" for k in raw if k not in known | EXTRA_KEYS]
    licenses = raw.get("license")
    for lic in [licenses] if isinstance(licenses, str) else licenses or [None]:
        if lic not in HUB_LICENSES:
            problems.append(f"license {lic!r} is not a Hub licence id")
    if (licenses == "other" or licenses == ["other"]) and not (raw.get("license_name") and raw.get("license_link")):
        problems.append("license 'other' needs license_name and license_link")
    if [c for c in _as_list(raw.get("size_categories")) if c not in SIZE_CATEGORIES] or not raw.get("size_categories"):
        problems.append(f"size_categories {raw.get('size_categories')!r}: expected one of {', '.join(SIZE_CATEGORIES)}")
    problems += [
        f"task category {t!r} is not one latbench declares"
        for t in _as_list(raw.get("task_categories"))
        if t not in TASK_CATEGORIES
    ]
    if not isinstance(raw.get("pretty_name"), str) or not all(isinstance(t, str) for t in _as_list(raw.get("tags"))):
        problems.append("pretty_name must be a string and tags a list of strings")
    problems += _check_configs(card.data, folder)
    if not card.text.strip():
        problems.append("the card has no body")
    return problems


def _as_list(value) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _check_configs(data, folder: Path | None) -> list[str]:
    from datasets.utils.metadata import MetadataConfigs

    configs = data.get("configs")
    if not configs:
        return ["no configs"]
    try:
        MetadataConfigs.from_dataset_card_data(data)
    except ValueError as e:
        return [f"configs: {' '.join(str(e).split())[:300]}"]
    problems = []
    names = [c["config_name"] for c in configs]
    problems += [f"config {n!r} declared twice" for n in sorted({n for n in names if names.count(n) > 1})]
    if sum(bool(c.get("default")) for c in configs) > 1:
        problems.append("more than one default config")
    if folder is not None:
        for c in configs:
            files = c["data_files"] if isinstance(c["data_files"], list) else [c["data_files"]]
            for f in files:
                for path in _as_list(f["path"] if isinstance(f, dict) else f):
                    if not (Path(folder) / path).is_file():
                        problems.append(f"config {c['config_name']!r}: {path} does not exist")
    return problems


def _pattern(name: str) -> str:
    """``titanxp_*`` as code when the part before ``_*`` follows the naming rule."""
    base = name[:-2] if name.endswith("_*") else name
    return f"`{name}`" if is_safe_name(base) else md_text(name)


class _NoDuplicates(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        dup = sorted({str(k) for k in keys if keys.count(k) > 1})
        if dup:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key(s) {', '.join(dup)}", node.start_mark)
        return super().construct_mapping(node, deep=deep)
