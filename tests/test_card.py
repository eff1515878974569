"""The dataset card that ``latbench data build`` writes and ``latbench data push`` publishes.

- it is a Hugging Face dataset card (``DatasetCard`` / ``DatasetCardData``) that passes the offline
  checks (:func:`latbench.data.card.check`), and each check fails on the metadata it guards;
- ``datasets.load_dataset(folder, name)`` loads every kind of config the card declares, and the
  default config without a name;
- the measurement protocol states the numbers of the committed ``meta.json`` files (no placeholder
  names), and every measured device shows its test-retest noise, or "unknown";
- the known limitations are computed from the data (near-zero latencies, ties, aliases, families);
- ``data push`` refuses a card that fails the checks, before any network call.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from latbench.data import card, measured, store


@pytest.fixture(scope="module")
def dataset_dir(built_home) -> Path:
    return built_home / "dataset"


@pytest.fixture(scope="module")
def text(dataset_dir) -> str:
    return (dataset_dir / "README.md").read_text()


def _header(text: str) -> dict:
    return yaml.safe_load(text.split("\n---\n", 1)[0][4:])


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


# ------------------------------------------------------------------------ a valid Hugging Face card
def test_built_card_passes_the_offline_checks(text, dataset_dir):
    from huggingface_hub import DatasetCard, DatasetCardData

    assert card.check(text, dataset_dir) == []
    parsed = DatasetCard(text)
    assert isinstance(parsed.data, DatasetCardData)
    assert parsed.data.license == "mit" and parsed.data.task_categories == ["tabular-regression"]
    rows = sum(c["rows"] for c in store.info()["spaces"].values())
    assert parsed.data.size_categories == [card.size_category(rows)]


def test_card_configs_are_every_parquet_file_of_the_dataset(text, dataset_dir):
    declared = {f["path"] for c in _header(text)["configs"] for f in c["data_files"]}
    on_disk = {str(p.relative_to(dataset_dir)) for p in (dataset_dir / "data").rglob("*.parquet")}
    assert declared == on_disk
    defaults = [c["config_name"] for c in _header(text)["configs"] if c.get("default")]
    assert defaults == ["nb201"]


def test_load_dataset_reads_the_card_configs(dataset_dir, tmp_path):
    import datasets

    cache = str(tmp_path / "hf")
    nb201 = datasets.load_dataset(str(dataset_dir), "nb201", cache_dir=cache)["train"]
    assert nb201.num_rows == store.info()["spaces"]["nb201"]["rows"]
    default = datasets.load_dataset(str(dataset_dir), cache_dir=cache)["train"]  # no name: the default config
    assert default.num_rows == nb201.num_rows
    devices = datasets.load_dataset(str(dataset_dir), "devices", cache_dir=cache)["train"]
    assert devices.num_rows == len(store.load_devices())
    task = datasets.load_dataset(str(dataset_dir), "measured-nb201-runtime", cache_dir=cache)
    assert set(task) == {"train", "test"} and task["test"].num_rows > 0


# ----------------------------------------------------------- protocol numbers and test-retest noise
def _committed() -> list[measured.MeasuredDevice]:
    return [d for devs in measured.read_all().devices.values() for d in devs]


def test_protocol_states_the_meta_json_numbers_not_placeholders(text):
    protocol = _section(text, "Measurement protocol")
    for placeholder in ("ROTATE", "KERNEL_PASSES", "CONTENTION_SHARE", "``warmup``", "``repeats``", "max_wait"):
        assert placeholder not in text
    metas = [json.loads((d.folder / "meta.json").read_text()) for d in _committed()]
    warmups = {m["setting"]["warmup"] for m in metas}
    repeats = {m["setting"]["repeats"] for m in metas}
    rotate = {m["rotate_inputs"] for m in metas}
    assert len(warmups) == len(repeats) == len(rotate) == 1  # the committed devices share one protocol
    assert f"- {warmups.pop()} untimed forward passes, then {repeats.pop()} timed ones" in protocol
    assert f"inputs: {rotate.pop()} different random tensors" in protocol
    share = {m["contention_guard"]["share"] for m in metas}.pop()
    assert f"more than {share:.0%} of the CPU" in protocol


def test_every_measured_device_shows_its_settings_and_retest(text):
    rows = {
        line.split("|")[1].strip(): line
        for line in text.splitlines()
        if line.startswith("| `nb201/") or line.startswith("| `fbnet/")
    }
    committed = _committed()
    assert len(committed) == len(rows)
    for d in committed:
        cells = [c.strip() for c in rows[f"`{d.meta.space}/{d.meta.device}`"].split("|")[1:-1]]
        assert cells[1] == str(len(d.archs))
        assert cells[7:11] == [
            str(d.meta.setting.warmup),
            str(d.meta.setting.repeats),
            str(d.meta.model_extra["rotate_inputs"]),
            str(d.meta.model_extra["kernel_passes"]),
        ]
        assert cells[11] == f"{d.retest['spearman']:.3f}"
        assert cells[12] == f"{d.retest['median_abs_rel_diff']:.1%} ({d.retest['archs']})"


def test_retest_comes_from_the_devices_table_or_is_unknown():
    info = {"spaces": {}, "sources": [{"name": "latbench-measured", "license": "MIT", "files": [
        {"path": "nb201/dev-a", "archs": 3, "settings": {"warmup": 5}},
        {"path": "nb201/dev-b", "archs": 3},
    ]}]}  # fmt: skip
    devices = [
        {"device": "dev-a", "source": "latbench-measured", "retest_spearman": 0.5, "retest_median_rel_diff": 0.25},
        {"device": "dev-b", "source": "latbench-measured"},
    ]
    text = card.render(info, [], [], devices)
    row_a = next(x for x in text.splitlines() if x.startswith("| `nb201/dev-a`"))
    row_b = next(x for x in text.splitlines() if x.startswith("| `nb201/dev-b`"))
    assert "| 0.500 | 25.0% (unknown) |" in row_a
    assert row_b.count("unknown") >= 8  # every setting its meta.json does not give, and the retest
    assert "test-retest Spearman 0.500–0.500 (1 of 2 devices known)" in text


def test_card_never_shows_a_setting_it_does_not_know():
    info = {"spaces": {}, "sources": [{"name": "latbench-measured", "files": [
        {"path": "nb201/dev-a", "archs": 3, "settings": {"warmup": "5", "repeats": float("nan"), "rotate_inputs": True}},
    ]}]}  # fmt: skip
    protocol = _section(card.render(info, [], [], []), "Measurement protocol")
    assert "unknown untimed forward passes, then unknown timed ones" in protocol
    assert "inputs: unknown different random tensors" in protocol


# ---------------------------------------------------------------------------------- limitations
def test_limitations_follow_the_data():
    latency = {
        "nb201": {"pixel3": card.latency_summary([0.003, 10.0, 11.0, 12.0]), "pixel2": card.latency_summary([3.0, 4.0, 4.0])},
        "fbnet": {"gold_6226": card.latency_summary([1.5, 2.5, 3.5])},
    }
    info = {"spaces": {"nb201": {"devices": ["titanxp_1", "pixel3"]}, "ofa": {"devices": ["titan_xp_1"]}}}
    devices = [
        {"device": "titanxp_1", "family": "desktop GPU", "hardware": "NVIDIA Titan Xp", "batch_size": 1, "source": "help"},
        {"device": "titan_xp_1", "family": "desktop GPU", "hardware": "NVIDIA Titan Xp", "batch_size": 1, "source": "help"},
        {
            "device": "gold_6226",
            "family": "desktop CPU",
            "hardware": "Intel Xeon Gold 6226",
            "batch_size": None,
            "source": "help",
        },
        {"device": "fpga", "family": "FPGA", "hardware": "FPGA accelerator (HW-NAS-Bench's estimate)", "batch_size": None},
    ]
    notes = "\n".join(card.limitations(info, devices, latency, []))
    assert "`nb201/pixel3`: 1 of 4 archs" in notes and "gold_6226`: " not in notes.split("Coarse")[0]
    assert "`nb201/pixel2` (whole ms, 2 distinct values)" in notes
    assert "`titan_xp_*` (ofa) and `titanxp_*` (nb201) are all NVIDIA Titan Xp" in notes
    assert "`gold_6226` are listed as desktop CPU but are server CPUs" in notes
    assert "`fpga` are HW-NAS-Bench's estimates" in notes
    assert "Unknown batch size" in notes
    fixed = [dict(d, family="server CPU") if d["device"] == "gold_6226" else d for d in devices]
    assert "server CPUs" not in "\n".join(card.limitations(info, fixed, latency, []))  # the note goes once the data is right


def test_card_limitations_of_the_built_dataset(text):
    notes = _section(text, "Known limitations")
    assert "`titan_xp_*` (ofa) and `titanxp_*` (fbnet, nb201) are all NVIDIA Titan Xp" in notes
    assert "**Noisy measured devices**" in notes and "2 CPU core(s)" in notes
    assert "**Estimates, not measurements**: `eyeriss`, `fpga`" in notes


@pytest.mark.real_data
def test_card_lists_the_nb201_near_zero_latencies_of_pixel3_and_raspi4(text):
    notes = _section(text, "Known limitations")
    assert "`nb201/pixel3`: 291 of 15,625 archs" in notes
    assert "`nb201/raspi4`: 302 of 15,625 archs" in notes
    assert "`nb201/pixel2` (whole ms, 42 distinct values)" in notes


@pytest.mark.real_data
def test_card_provenance_lists_every_pinned_file_with_its_sha256(text):
    from latbench.data.sources import get_source

    manifest = get_source("help").manifest
    assert f"at commit `{manifest['commit']}`" in text and "<https://github.com/HayeonLee/HELP>" in text
    for f in manifest["files"]:
        assert f"| `{f['path']}` | {f['size']:,} | `{f['sha256']}` |" in text
    assert "@inproceedings{lee2021help" in text and "@inproceedings{li2021hwnasbench" in text


# ------------------------------------------------------------------------- the checks must bite
GOOD = """---
license: mit
size_categories:
- 100K<n<1M
task_categories:
- tabular-regression
pretty_name: x
tags:
- latency
configs:
- config_name: a
  data_files:
  - split: train
    path: a.parquet
  default: true
---

# body
"""


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace("license: mit", "license: mit-ish"), "license 'mit-ish' is not a Hub licence id"),
        (lambda t: t.replace("license: mit", "license: other"), "license 'other' needs license_name and license_link"),
        (lambda t: t.replace("pretty_name: x", "pretty_name: x\ncolour: red"), "unknown metadata key 'colour'"),
        (lambda t: t.replace("pretty_name: x", "pretty_name: x\npretty_name: y"), "duplicate key(s) pretty_name"),
        (lambda t: t.replace("100K<n<1M", "lots"), "size_categories ['lots']"),
        (lambda t: t.replace("tabular-regression", "image-classification"), "task category 'image-classification'"),
        (lambda t: t.replace("path: a.parquet", "path: b.parquet"), "config 'a': b.parquet does not exist"),
        (lambda t: t.replace("  - split: train\n", "  - split: train\n    extra: 1\n"), "configs: "),
        (lambda t: t.replace("---\n\n# body", "- config_name: a\n  data_files: a.parquet\n---\n\n# body"), "config 'a' declared twice"),
        (lambda t: t.replace("  default: true\n", "  default: true\n- config_name: b\n  data_files: a.parquet\n  default: true\n"),
         "more than one default config"),
        (lambda t: t.replace("# body", ""), "the card has no body"),
        (lambda t: t[4:], "no YAML metadata block"),
        (lambda t: t.replace("license: mit", "license: [mit"), "metadata does not parse"),
    ],
)  # fmt: skip
def test_check_finds_each_problem(tmp_path, edit, problem):
    (tmp_path / "a.parquet").write_bytes(b"")
    assert card.check(GOOD, tmp_path) == []
    found = card.check(edit(GOOD), tmp_path)
    assert any(problem in p for p in found), found


def test_size_category_bins():
    assert [card.size_category(n) for n in (0, 999, 1000, 634_875, 1_000_000, 10**12)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "100K<n<1M",
        "1M<n<10M",
        "100M<n<1B",
    ]


def test_a_licence_the_hub_has_no_id_for_becomes_other_with_name_and_link(tmp_path):
    info = {"spaces": {}, "sources": [{"name": "x", "license": "Lab Licence 2", "homepage": "https://lab.example/licence"}]}
    text = card.render(info, [("a", "a.parquet")], [], [])
    header = _header(text)
    assert header["license"] == "other" and header["license_name"] == "lab-licence-2"
    assert header["license_link"] == "https://lab.example/licence"
    (tmp_path / "a.parquet").write_bytes(b"")
    assert card.check(text, tmp_path) == []


# -------------------------------------------------------------------- data push checks it first
def test_push_refuses_a_card_that_fails_the_checks(dataset_dir, tmp_path, monkeypatch):
    from latbench.data.push import push
    from latbench.errors import DataError

    copy = tmp_path / "home" / "dataset"
    copy.mkdir(parents=True)
    (copy / "data").symlink_to(dataset_dir / "data")
    (copy / "latbench.json").write_text((dataset_dir / "latbench.json").read_text())
    (copy / "README.md").write_text(re.sub(r"(?m)^license: mit$", "license: mit-ish", (dataset_dir / "README.md").read_text()))
    monkeypatch.setenv("LATBENCH_HOME", str(copy.parent))
    store.clear_cache()

    class Api:
        calls: list = []

        def create_repo(self, *a, **k):
            self.calls.append("create_repo")

        def upload_folder(self, **k):
            self.calls.append("upload_folder")

    try:
        with pytest.raises(DataError, match="license 'mit-ish' is not a Hub licence id"):
            push("org/name", api=Api())
    finally:
        store.clear_cache()
    assert Api.calls == []


HOSTILE = ["<img src=x onerror=alert(1)>", "[click](javascript:alert(1))", "a | b | c", "line\nbreak <b>bold</b>"]


@pytest.mark.parametrize("text", HOSTILE)
def test_free_text_in_measured_settings_is_inert(text):
    info = {"spaces": {}, "sources": [{"name": "latbench-measured", "files": [
        {"path": "nb201/dev-a", "archs": 3, "settings": {"hardware": text, "runtime": text, "precision": text, "origin": text}},
    ]}]}  # fmt: skip
    devices = [{"device": "dev-a", "source": "latbench-measured", "family": text, "hardware": text, "origin": text}]
    out = card.render(info, [], [], devices)
    assert "<img" not in out and "<b>" not in out and not re.search(r"(?<!\\)\]\(", out)  # no tag, no live link
    for row in (x for x in out.splitlines() if x.startswith("| `nb201/dev-a`") or x.startswith("| `dev-a`")):
        cells = re.split(r"(?<!\\)\|", row)[2:-1]
        assert len(cells) in (4, 12), row  # no injected column
        for cell in cells:
            assert "<" not in cell and not re.search(r"(?<!\\)[\[\]!*`~]", cell), cell
