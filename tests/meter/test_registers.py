"""The register map file: validation, coverage of the metric contract, and decoding (no network)."""

from __future__ import annotations

import dataclasses
import math
import struct
from pathlib import Path

import pytest
import yaml

from collector.metrics import METRICS
from collector.registers import (
    DEFAULT_MAP,
    ElementDecoder,
    PayloadError,
    RegisterMapError,
    load_register_map,
    parse_register_map,
    register_map,
)


def test_bundled_map_polls_the_four_pm500_instances_with_documented_sizes() -> None:
    regmap = register_map()
    assert regmap.assembly_class == 0x04
    assert (regmap.data_attribute, regmap.size_attribute) == (3, 4)
    assert {n: i.size_bytes for n, i in regmap.instances.items()} == {101: 48, 102: 72, 107: 72, 108: 4}
    assert regmap.instances[108].element_type == "INT"


def test_product_info_is_instance_100_read_by_the_probe_not_polled() -> None:
    info = register_map().product_info
    assert info is not None and info.instance == 100 and info.element_type == "UINT"
    assert 100 not in register_map().instances
    assert [e.element for e in info.elements] == [1, 2, 3, 4]
    assert "Table 9" in info.provenance and "20 UINT" in info.provenance


def test_alarm_and_output_bits_of_instance_108_decode_to_0_1_metrics() -> None:
    inst = register_map().instances[108]
    out: dict[str, float] = {}
    # virtual alarms 2 and 4 (bits 1, 3); output port 1 (bit 0); bit 4 of the alarm word is no alarm
    inst.decode(struct.pack("<2h", 0b11010, 0b01), out)
    assert out == {
        "alarm1": 0.0,
        "alarm2": 1.0,
        "alarm3": 0.0,
        "alarm4": 1.0,
        "output1": 1.0,
        "output2": 0.0,
    }


def test_int_instances_encode_little_endian_16_bit() -> None:
    assert (
        register_map().instances[108].encode({"virtual_alarms": 2, "output_status": 3}) == b"\x02\x00\x03\x00"
    )


def test_every_contract_metric_is_decoded_from_exactly_one_instance() -> None:
    regmap = register_map()
    decoded = {metric for inst in regmap.instances.values() for metric in inst.metrics}
    assert decoded == {m.name for m in METRICS}


def test_every_element_states_its_provenance() -> None:
    for inst in register_map().instances.values():
        assert "CONFIRMED" in inst.provenance and "ASSUMED" in inst.provenance
        for r in inst.registers:
            assert r.provenance


def test_decode_follows_offsets_little_endian_float32() -> None:
    inst = register_map().instances[101]
    raw = [float(i) + 0.5 for i in range(12)]
    out: dict[str, float] = {}
    nan = inst.decode(struct.pack("<12f", *raw), out)
    assert nan == []
    assert out["voltageAN"] == 0.5  # offset 0
    assert out["voltageAB"] == 4.5  # offset 16
    assert out["currentAverage"] == 11.5  # offset 44


def test_net_energy_combines_the_giga_kilo_pairs_of_import_and_export() -> None:
    inst = register_map().instances[107]
    raw = [0.0] * 18
    raw[0], raw[1] = 2.0, 345_678.5  # total kWh+ = 2 GWh + 345678.5 kWh
    raw[4], raw[5] = 0.0, 78.5  # total kWh- = 78.5 kWh
    out: dict[str, float] = {}
    inst.decode(struct.pack("<18f", *raw), out)
    assert out == {"energy": 2_000_000 + 345_678.5 - 78.5}


def test_nan_element_drops_only_the_metrics_built_from_it() -> None:
    inst = register_map().instances[102]
    raw = [1.0] * 18
    raw[16] = math.nan  # frequency
    out: dict[str, float] = {}
    assert inst.decode(struct.pack("<18f", *raw), out) == ["frequency"]
    assert "frequency" not in out and out["realPowerA"] == 1.0


def _poll_elements() -> list[float]:
    """Flat elements of one poll in map order (101: 12, 102: 18, 107: 18 REAL; 108: 2 INT)."""
    return [float(i) + 0.25 for i in range(48)] + [0b0101, 0b10]


def test_one_decoder_for_the_whole_poll_finds_each_instance_at_its_flat_offset() -> None:
    regmap = register_map()
    flat = _poll_elements()
    flat[30], flat[31], flat[34], flat[35] = 2.0, 345_678.5, 0.0, 78.5  # 107: kWh+ giga/kilo, kWh- giga/kilo
    values, nan = ElementDecoder.over(list(regmap.instances.values())).decode(tuple(flat))
    assert nan == []
    assert values["voltageAN"] == 0.25  # 101 element 0
    assert values["currentAverage"] == 11.25  # 101 element 11
    assert values["frequency"] == 28.25  # 102 element 16 = flat 12 + 16
    assert values["energy"] == 2_000_000 + 345_678.5 - 78.5
    assert (values["alarm1"], values["alarm2"], values["alarm3"], values["alarm4"]) == (1.0, 0.0, 1.0, 0.0)
    assert (values["output1"], values["output2"]) == (0.0, 1.0)
    assert set(values) == {m.name for m in METRICS}


def test_whole_poll_nan_leaves_out_only_the_metrics_built_from_it() -> None:
    flat = _poll_elements()
    flat[12 + 16] = math.nan  # 102 frequency
    flat[36] = math.nan  # 107 element 6, total kVARh- giga: published by no metric
    flat[35] = math.nan  # 107 total kWh- kilo: part of energy
    values, nan = ElementDecoder.over(list(register_map().instances.values())).decode(tuple(flat))
    assert sorted(nan) == ["energy", "frequency"]
    assert "frequency" not in values and "energy" not in values
    assert values["voltageAN"] == 0.25 and len(values) == len(METRICS) - 2


def test_opposite_infinities_are_values_not_nan() -> None:
    """The NaN test sums the single-element metrics: +inf and -inf make that sum NaN, yet neither is NaN
    (the quality screen, not the decoder, refuses non-finite values)."""
    flat = _poll_elements()
    flat[0], flat[1] = math.inf, -math.inf
    values, nan = ElementDecoder.over(list(register_map().instances.values())).decode(tuple(flat))
    assert nan == []
    assert values["voltageAN"] == math.inf and values["voltageBN"] == -math.inf
    assert len(values) == len(METRICS)


def test_whole_poll_decode_equals_the_instance_by_instance_decode() -> None:
    regmap = register_map()
    flat = _poll_elements()
    payloads, start = {}, 0
    for number, inst in regmap.instances.items():
        payloads[number] = struct.pack(f"<{inst.element_format}", *flat[start : start + inst.elements])
        start += inst.elements
    decoder = ElementDecoder.over(list(regmap.instances.values()))
    assert decoder.decode(tuple(flat)) == regmap.decode(payloads)
    assert decoder.by_name(tuple(flat)) == regmap.by_name(payloads)
    assert decoder.by_name(tuple(flat))["v_l1_n"] == 0.25


@pytest.mark.parametrize("length", [0, 44, 52])
def test_wrong_payload_length_is_refused(length: int) -> None:
    with pytest.raises(PayloadError, match=f"instance 101: payload is {length} bytes, expected 48"):
        register_map().instances[101].decode(b"\0" * length, {})


def test_encode_is_the_inverse_of_decode() -> None:
    inst = register_map().instances[101]
    out: dict[str, float] = {}
    inst.decode(inst.encode({"v_l1_n": 277.25, "a_l3": 12.5}), out)
    assert out["voltageAN"] == 277.25 and out["currentC"] == 12.5 and out["voltageBN"] == 0.0


def _broken_map(tmp_path: Path, edit: object) -> Path:
    data = yaml.safe_load(DEFAULT_MAP.read_text())
    edit(data)  # type: ignore[operator]
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["instances"][101]["registers"][0].update(metric="voltsA"),
            r"registers\[0\]\.metric: 'voltsA'",
        ),
        (
            lambda d: d["instances"][101]["registers"][1].update(offset=0),
            r"instances\.101\.registers: offsets",
        ),
        (lambda d: d["instances"][102]["registers"][0].pop("provenance"), r"registers\[0\]\.provenance"),
        (
            lambda d: d["instances"][101].update(elements=13),
            r"instances\.101\.registers: offsets must be 0\.\.48",
        ),
        (lambda d: d["instances"][101]["registers"][0].update(unit="kV"), r"registers\[0\]\.unit"),
        (lambda d: d.update(byte_order="big"), "only little-endian REAL"),
        (
            lambda d: d["instances"][102]["registers"][0].update(metric="voltageAN", unit="V"),
            "metric voltageAN is also decoded from instance 101",
        ),
        (lambda d: d["instances"][108].update(element_type="DINT"), r"instances\.108\.element_type"),
        (
            lambda d: d["instances"][108]["registers"][0].update(bits={16: "alarm1"}),
            r"registers\[0\]\.bits\.16: bit number must be an integer 0\.\.15",
        ),
        (
            lambda d: d["instances"][108]["registers"][1].update(bits={0: "siren"}),
            r"registers\[1\]\.bits\.0: 'siren' is not a metric",
        ),
        (lambda d: d["product_info"].update(element_type="REAL"), r"product_info\.element_type"),
        (
            lambda d: d["instances"][108]["registers"][0].update(bits={}),
            r"registers\[0\]\.bits: expected a mapping of bit number \(0\.\.15\) -> metric$",
        ),
        (
            lambda d: d["instances"][108]["registers"][0].update(bits=["alarm1"]),
            r"registers\[0\]\.bits: expected a mapping of bit number",
        ),
        (
            lambda d: d["instances"][108]["registers"][0].update(metric="frequency", unit="Hz"),
            r"instances\.108\.registers: INT elements publish through `bits` only$",
        ),
        (lambda d: d.update(product_info=[100]), r": product_info: expected a mapping$"),
        (lambda d: d["product_info"].update(instance=0), r"product_info\.instance: instance number must be"),
        (lambda d: d["product_info"].update(instance=65536), r"product_info\.instance: instance number"),
        (lambda d: d["product_info"].update(instance="100"), r"product_info\.instance: instance number"),
        (lambda d: d["product_info"].update(title=""), r"product_info\.title: required non-empty string$"),
        (lambda d: d["product_info"].pop("provenance"), r"product_info\.provenance: required non-empty"),
        (lambda d: d["product_info"].update(elements=[]), r"product_info\.elements: expected a list of"),
        (lambda d: d["product_info"].update(elements={}), r"product_info\.elements: expected a list of"),
        (
            lambda d: d["product_info"]["elements"][1].update(element=0),
            r"product_info\.elements\[1\]: expected \{element: >= 1, name, meaning\}$",
        ),
        (lambda d: d["product_info"]["elements"][0].update(element="1"), r"product_info\.elements\[0\]"),
        (lambda d: d["product_info"]["elements"][0].update(name=""), r"product_info\.elements\[0\]"),
        (lambda d: d["product_info"]["elements"][2].pop("meaning"), r"product_info\.elements\[2\]"),
        (lambda d: d["product_info"]["elements"].__setitem__(0, "base"), r"product_info\.elements\[0\]"),
    ],
)
def test_malformed_map_is_refused_naming_the_field(tmp_path: Path, edit: object, message: str) -> None:
    with pytest.raises(RegisterMapError, match=message):
        load_register_map(_broken_map(tmp_path, edit))


def _small_map() -> dict[str, object]:
    """A minimal valid map, independent of the bundled file: 2 instances, a scaled and a summed metric."""
    def reg(offset: int, name: str, metric: str | None, unit: str, **more: object) -> dict[str, object]:
        return {"offset": offset, "name": name, "metric": metric, "unit": unit, "provenance": "test", **more}

    return {
        "source": "unit test",
        "assembly_class": 4,
        "data_attribute": 3,
        "size_attribute": 4,
        "element_type": "REAL",
        "byte_order": "little",
        "instances": {
            1: {"title": "volts", "elements": 2, "provenance": "test",
                "registers": [reg(0, "v1", "voltageAN", "V"), reg(4, "spare", None, "")]},
            65535: {"title": "energy", "elements": 3, "provenance": "test",
                    "registers": [reg(0, "mwh", "energy", "MWh", scale=1000), reg(4, "kwh", "energy", "kWh"),
                                  reg(8, "kwh_out", "energy", "kWh", scale=-1.0)]},
        },
    }


def test_small_map_parses_and_decodes_with_scales() -> None:
    regmap = parse_register_map(_small_map(), "map.yaml")
    assert (regmap.source, regmap.assembly_class, regmap.data_attribute, regmap.size_attribute) == (
        "unit test", 4, 3, 4)
    assert sorted(regmap.instances) == [1, 65535]
    energy = regmap.instances[65535]
    assert (energy.title, energy.elements, energy.size_bytes) == ("energy", 3, 12)
    assert [(r.name, r.offset, r.metric, r.unit, r.scale) for r in energy.registers] == [
        ("mwh", 0, "energy", "MWh", 1000.0), ("kwh", 4, "energy", "kWh", 1.0),
        ("kwh_out", 8, "energy", "kWh", -1.0)]
    payloads = {1: struct.pack("<2f", 230.5, 9.0), 65535: struct.pack("<3f", 2.0, 30.5, 0.5)}
    values, nan = regmap.decode(payloads)
    assert values == {"voltageAN": 230.5, "energy": 2030.0} and nan == []
    values, nan = regmap.decode({1: struct.pack("<2f", math.nan, 1.0), 65535: struct.pack("<3f", 1, 1, 1)})
    assert values == {"energy": 1000.0} and nan == ["voltageAN"]
    assert energy.encode({"kwh": 1.5}) == struct.pack("<3f", 0.0, 1.5, 0.0)


def _set(path: str, value: object, drop: bool = False) -> object:
    """An edit of _small_map(): `path` is dotted, list indexes and instance numbers as digits."""
    def edit(data: dict[str, object]) -> None:
        *parents, last = path.split(".")
        node: object = data
        for key in parents:
            node = node[int(key) if key.isdigit() else key]  # type: ignore[index]
        target = int(last) if last.isdigit() else last
        if drop:
            del node[target]  # type: ignore[attr-defined]
        else:
            node[target] = value  # type: ignore[index]

    return edit


def _rename_instance(old: object, new: object) -> object:
    def edit(data: dict[str, object]) -> None:
        instances = data["instances"]
        instances[new] = instances.pop(old)  # type: ignore[attr-defined]

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.clear() or d.update(x=1), r"map\.yaml: element_type/byte_order: only little-endian"),
        (_set("element_type", "INT"), "element_type/byte_order: only little-endian REAL"),
        (_set("data_attribute", "3"), r"^map\.yaml: data_attribute: required integer$"),
        (_set("size_attribute", None, drop=True), "size_attribute: required integer"),
        (_set("assembly_class", 4.0), "assembly_class: required integer"),
        (_set("instances", {}), "instances: expected a non-empty mapping"),
        (_set("instances", [1]), "instances: expected a non-empty mapping"),
        (_rename_instance(1, 0), r"instances\.0: instance number must be an integer 1\.\.65535"),
        (_rename_instance(65535, 65536), r"instances\.65536: instance number must be an integer 1\.\.65535"),
        (_rename_instance(1, "one"), r"instances\.one: instance number must be an integer 1\.\.65535"),
        (_set("instances.1", "volts"), r"instances\.1: expected a mapping"),
        (_set("instances.1.elements", 0), r"instances\.1\.elements: expected a positive integer"),
        (_set("instances.1.elements", "2"), r"instances\.1\.elements: expected a positive integer"),
        (_set("instances.1.registers", {}), r"instances\.1\.registers: expected a list"),
        (_set("instances.1.title", ""), r"instances\.1\.title: required non-empty string"),
        (_set("instances.1.provenance", None, drop=True), r"instances\.1\.provenance: required non-empty"),
        (_set("instances.1.registers.0", "v1"), r"registers\[0\]: expected a mapping"),
        (_set("instances.1.registers.0.colour", "red"), r"registers\[0\]: unknown field\(s\) \['colour'\]"),
        (_set("instances.1.registers.0.name", ""), r"registers\[0\]\.name: required non-empty string"),
        (_set("instances.1.registers.1.name", "v1"), r"instances\.1\.registers: register names must be uniq"),
        (_set("instances.1.registers.1.offset", -4), r"registers\[1\]\.offset: expected a byte offset"),
        (_set("instances.1.registers.1.offset", 2), r"registers\[1\]\.offset: expected a byte offset"),
        (_set("instances.1.registers.1.offset", "4"), r"registers\[1\]\.offset: expected a byte offset"),
        (_set("instances.1.registers.1.offset", 8), r"instances\.1\.registers: offsets must be 0\.\.4 step"),
        (_set("instances.1.registers.0.provenance", ""), r"registers\[0\]\.provenance: required"),
        (_set("instances.1.registers.0.scale", 0), r"registers\[0\]\.scale: expected a finite non-zero"),
        (_set("instances.1.registers.0.scale", math.nan), r"registers\[0\]\.scale: expected a finite"),
        (_set("instances.1.registers.0.scale", math.inf), r"registers\[0\]\.scale: expected a finite"),
        (_set("instances.1.registers.0.scale", True), r"registers\[0\]\.scale: expected a finite"),
        (_set("instances.1.registers.0.scale", "2"), r"registers\[0\]\.scale: expected a finite"),
        (_set("instances.1.registers.0.unit", "kV"), r"registers\[0\]\.unit: 'kV' differs from metric volt"),
        (
            lambda d: d["instances"][1]["registers"][0].update(unit="kV", scale=-1),
            r"registers\[0\]\.unit: 'kV' differs",
        ),
        (_set("instances.65535.registers.0.metric", "voltageAN"), "metric voltageAN is also decoded from"),
    ],
)
def test_malformed_small_map_is_refused_naming_the_field(edit: object, message: str) -> None:
    data = _small_map()
    edit(data)  # type: ignore[operator]
    with pytest.raises(RegisterMapError, match=message):
        parse_register_map(data, "map.yaml")


def test_root_must_be_a_mapping() -> None:
    with pytest.raises(RegisterMapError, match=r"^map\.yaml: \(root\): expected a mapping$"):
        parse_register_map(["instances"], "map.yaml")


def test_unit_may_differ_only_for_a_scaled_element() -> None:
    data = _small_map()
    data["instances"][1]["registers"][0].update(unit="kV", scale=1000)  # type: ignore[index]
    assert parse_register_map(data, "map.yaml").instances[1].registers[0].unit == "kV"


def test_one_element_instance_and_no_source() -> None:
    data = _small_map()
    del data["source"]
    data["instances"][1].update(elements=1)  # type: ignore[index]
    data["instances"][1]["registers"].pop()  # type: ignore[index]
    regmap = parse_register_map(data, "map.yaml")
    assert regmap.source == ""
    assert regmap.instances[1].size_bytes == 4


def test_unreadable_map_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(RegisterMapError, match=r"missing\.yaml: cannot read register map: "):
        load_register_map(tmp_path / "missing.yaml")


def test_unit_defaults_to_empty_for_an_unpublished_element() -> None:
    data = _small_map()
    del data["instances"][1]["registers"][1]["unit"]  # type: ignore[index]
    assert parse_register_map(data, "map.yaml").instances[1].registers[1].unit == ""


def test_parsed_map_is_immutable() -> None:
    regmap = parse_register_map(_small_map(), "map.yaml")
    inst = regmap.instances[1]
    for obj, name in ((regmap, "source"), (inst, "title"), (inst.registers[0], "scale")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, name, None)


def test_by_name_reads_every_element_of_every_instance_given() -> None:
    """The self-check's input: each element by register name, published or not (literal bytes)."""
    regmap = register_map()
    reals = struct.pack("<12f", *range(1, 13))  # instance 101: 12 REAL
    states = struct.pack("<2h", 0b0101, -1)  # instance 108: 2 INT
    by_name = regmap.by_name({101: reals, 108: states})
    names_101 = [r.name for r in regmap.instances[101].registers]
    names_108 = [r.name for r in regmap.instances[108].registers]
    assert by_name == {**dict(zip(names_101, map(float, range(1, 13)), strict=True)),
                       names_108[0]: 5.0, names_108[1]: -1.0}
    assert all(type(v) is float for v in by_name.values())


@pytest.mark.parametrize(("instance", "bit"), [(1, 0), (65535, 15)])
def test_extreme_instance_numbers_and_bits_are_accepted(tmp_path: Path, instance: int, bit: int) -> None:
    def edit(d: dict) -> None:  # type: ignore[type-arg]
        d["product_info"]["instance"] = instance
        d["instances"][108]["registers"][0]["bits"] = {bit: "alarm1"}

    regmap = load_register_map(_broken_map(tmp_path, edit))
    assert regmap.product_info is not None and regmap.product_info.instance == instance
    assert regmap.product_info.element_type == "UINT"
    assert regmap.instances[108].registers[0].bits == ((bit, "alarm1"),)


def test_uint_status_word_decodes_every_bit_including_bit_15() -> None:
    """UINT elements (unsigned 16-bit): bit 15 of 0x8001 is set, and encode packs a missing element as 0."""
    data = _small_map()
    data["instances"][7] = {  # type: ignore[index]
        "title": "status", "elements": 2, "element_type": "UINT", "provenance": "test",
        "registers": [
            {"offset": 0, "name": "word", "metric": None, "unit": "", "provenance": "test",
             "bits": {0: "alarm1", 15: "alarm2"}},
            {"offset": 2, "name": "spare", "metric": None, "unit": "", "provenance": "test"},
        ],
    }
    inst = parse_register_map(data, "map.yaml").instances[7]
    assert (inst.element_format, inst.size_bytes) == ("2H", 4)
    out: dict[str, float] = {}
    assert inst.decode(bytes.fromhex("0180" "ffff"), out) == []
    assert out == {"alarm1": 1.0, "alarm2": 1.0}
    assert inst.encode({"word": 0x8000}) == bytes.fromhex("0080" "0000")


def test_product_info_may_be_int_or_uint_and_is_immutable() -> None:
    data = yaml.safe_load(DEFAULT_MAP.read_text())
    data["product_info"]["element_type"] = "INT"
    info = parse_register_map(data, "map.yaml").product_info
    assert info is not None and info.element_type == "INT"
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.title = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.elements[0].name = "changed"  # type: ignore[misc]


def test_status_bits_follow_every_change_of_the_word_and_ignore_unmapped_bits() -> None:
    decoder = ElementDecoder.over(list(register_map().instances.values()))
    alarms = ("alarm1", "alarm2", "alarm3", "alarm4")
    seen = []
    for word in (0b0101, 0b0010, 0b1111_0000_0101, 0b0000):  # bits 4..11 are no alarm
        flat = _poll_elements()
        flat[48] = word
        values, _ = decoder.decode(tuple(flat))
        seen.append(tuple(values[a] for a in alarms))
    assert seen == [(1, 0, 1, 0), (0, 1, 0, 0), (1, 0, 1, 0), (0, 0, 0, 0)]


@pytest.mark.parametrize("terms", [2, 3])
def test_combined_metric_whose_first_term_is_unscaled_still_sums_every_term(terms: int) -> None:
    """A metric built from several elements is never taken as its first element alone, whatever that
    element's scale (here kWh first, with scale 1, then MWh x 1000, then kWh out x -1 if 3 terms)."""
    data = _small_map()
    energy = data["instances"][65535]["registers"]  # type: ignore[index]
    energy[0]["scale"], energy[0]["unit"], energy[1]["scale"], energy[1]["unit"] = 1.0, "kWh", 1000, "MWh"
    if terms == 2:
        energy[2]["metric"] = None
    regmap = parse_register_map(data, "map.yaml")
    payloads = {1: struct.pack("<2f", 230.5, 0.0), 65535: struct.pack("<3f", 30.5, 2.0, 0.5)}
    values, nan = regmap.decode(payloads)
    expected = 30.5 + 2000.0 - (0.5 if terms == 3 else 0.0)
    assert values == {"voltageAN": 230.5, "energy": expected} and nan == []


@pytest.mark.parametrize("scale", [2.0, 1000.0, -1.0])
def test_single_scaled_element_is_multiplied_by_its_scale(scale: float) -> None:
    data = _small_map()
    volts = data["instances"][1]["registers"][0]  # type: ignore[index]
    volts["scale"], volts["unit"] = scale, "V" if abs(scale) == 1 else "kV"
    values, _ = parse_register_map(data, "map.yaml").decode({1: struct.pack("<2f", 0.25, 0.0)})
    assert values == {"voltageAN": 0.25 * scale}


def test_flat_elements_of_another_length_are_refused_not_truncated() -> None:
    decoder = ElementDecoder.over(list(register_map().instances.values()))
    with pytest.raises(ValueError, match="zip"):
        decoder.by_name(tuple(_poll_elements())[:-1])
