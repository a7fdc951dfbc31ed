"""hardware/pinmap.json against ESP32-S3 facts, the generated firmware/board/pins.py against the map,
and the power budget against the >= 10 h streaming target.

Each rule of tools/gen_pins.check_pinmap is also fed a deliberately broken copy of the map, so a
checker that stopped checking would fail here.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import gen_pins


def _load_battery_life():
    spec = importlib.util.spec_from_file_location("battery_life", REPO / "hardware" / "battery_life.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


battery_life = _load_battery_life()


@pytest.fixture()
def pinmap() -> dict:
    return gen_pins.load_pinmap()


def _signal(pinmap: dict, name: str) -> dict:
    return next(s for s in pinmap["signals"] if s["name"] == name)


def _det(m) -> int:
    return gen_pins._det3(m)


# --- the committed map --------------------------------------------------------------------------

def test_committed_pinmap_has_no_problems(pinmap):
    assert gen_pins.check_pinmap(pinmap) == []


def test_no_gpio_is_used_twice(pinmap):
    gpios = [s["gpio"] for s in pinmap["signals"]]
    assert len(gpios) == len(set(gpios))


def test_no_signal_on_a_forbidden_pin(pinmap):
    forbidden = {0, 3, 45, 46, 19, 20, 43, 44, *range(22, 38)}
    for sig in pinmap["signals"]:
        assert sig["gpio"] not in forbidden, sig["name"]
        assert 0 <= sig["gpio"] <= 48


def test_battery_sense_is_on_adc1(pinmap):
    vbat = _signal(pinmap, "vbat_sense")
    assert 1 <= vbat["gpio"] <= 10
    assert vbat["direction"] == "analog"
    div = vbat["divider"]
    # 4.2 V full charge must stay inside the ADC's 11 dB range (about 0-3.1 V on the S3).
    assert 4.2 * div["r_bottom_ohm"] / (div["r_top_ohm"] + div["r_bottom_ohm"]) < 3.0


def test_afe_bus_is_spi2_iomux_mode_1(pinmap):
    bus = pinmap["buses"]["afe_spi"]
    assert (bus["peripheral"], bus["machine_id"], bus["polarity"], bus["phase"]) == ("spi2", 1, 0, 1)
    gpio = {role: _signal(pinmap, bus[role])["gpio"] for role in ("cs", "mosi", "sck", "miso")}
    assert gpio == {"cs": 10, "mosi": 11, "sck": 12, "miso": 13}


def test_drdy_feeds_the_irq_and_the_pulse_counter_on_the_same_edge(pinmap):
    drdy = _signal(pinmap, "afe_drdy")
    counter = pinmap["counters"]["afe_drdy"]
    assert counter["source"] == "afe_drdy"
    assert drdy["direction"] == "in"
    assert "irq.falling" in drdy["functions"] and counter["edge"] == "falling"
    assert f"pcnt.unit{counter['machine_id']}" in drdy["functions"]


def test_mounting_matrix_is_a_proper_rotation(pinmap):
    m = pinmap["imu_mounting"]["sensor_to_body"]
    for i in range(3):
        for j in range(3):
            assert sum(m[k][i] * m[k][j] for k in range(3)) == (1 if i == j else 0)
    assert _det(m) == 1


def test_mounting_reads_plus_one_g_up_when_standing(pinmap):
    # Upright, the accelerometer's reaction to gravity points up the body (+z). The board stands
    # with its USB edge up and the IMU's +Y toward that edge, so the sensor must read it on +Y.
    m = pinmap["imu_mounting"]["sensor_to_body"]
    sensor_reading = (0, 1, 0)
    body = [sum(m[r][c] * sensor_reading[c] for c in range(3)) for r in range(3)]
    assert body == [0, 0, 1]


# --- generated pins.py ----------------------------------------------------------------------------

def test_committed_pins_py_equals_generator_output(pinmap):
    committed = gen_pins.PINS_PY.read_text()
    assert committed == gen_pins.render_pins(pinmap), "run: python tools/gen_pins.py"


def test_pins_py_says_it_is_generated():
    head = gen_pins.PINS_PY.read_text().splitlines()[0]
    assert "GENERATED" in head and "DO NOT EDIT" in head


def test_pins_py_values_match_the_map(pinmap):
    namespace: dict = {}
    source = gen_pins.PINS_PY.read_text().replace("from micropython import const", "const = int")
    exec(compile(source, "pins.py", "exec"), namespace)  # noqa: S102 - our generated module
    for sig in pinmap["signals"]:
        assert namespace[sig["name"].upper()] == sig["gpio"]
    assert namespace["AFE_SPI_PHASE"] == 1 and namespace["AFE_SPI_POLARITY"] == 0
    assert namespace["IMU_TO_BODY"] == tuple(tuple(r) for r in pinmap["imu_mounting"]["sensor_to_body"])


def test_check_mode_fails_when_pins_py_drifts(tmp_path, monkeypatch):
    stale = tmp_path / "pins.py"
    stale.write_text(gen_pins.PINS_PY.read_text().replace("const(14)", "const(5)"))
    monkeypatch.setattr(gen_pins, "PINS_PY", stale)
    assert gen_pins.main(["--check"]) == 1
    stale.write_text(gen_pins.render_pins(gen_pins.load_pinmap()))
    assert gen_pins.main(["--check"]) == 0


# --- broken maps: each rule must fire -----------------------------------------------------------

def _broken(pinmap: dict, edit) -> list[str]:
    bad = copy.deepcopy(pinmap)
    edit(bad)
    return gen_pins.check_pinmap(bad)


def _set_gpio(name: str, gpio: int):
    def edit(pm):
        _signal(pm, name)["gpio"] = gpio
    return edit


@pytest.mark.parametrize("name, gpio, expected", [
    ("led", 14, "GPIO14 is used twice"),
    ("led", 0, "strapping pin"),
    ("led", 46, "strapping pin"),
    ("led", 30, "SPI flash"),
    ("led", 35, "octal PSRAM"),
    ("led", 19, "native USB"),
    ("led", 43, "UART0"),
    ("led", 23, "does not exist"),
    ("vbat_sense", 15, "ADC2 is unusable"),
    ("vbat_sense", 38, "not an ADC1 pin"),
    ("button", 38, "not an RTC GPIO"),
    ("afe_sck", 5, "iomux sck must be GPIO12"),
])
def test_checker_reports_a_bad_pin(pinmap, name, gpio, expected):
    problems = _broken(pinmap, _set_gpio(name, gpio))
    assert any(expected in p for p in problems), problems


def test_checker_reports_wrong_adc_channel(pinmap):
    def edit(pm):
        _signal(pm, "vbat_sense")["functions"] = ["adc1.ch3"]
    assert any("is adc1.ch0, not adc1.ch3" in p for p in _broken(pinmap, edit))


def test_checker_reports_incomplete_bus(pinmap):
    def edit(pm):
        del pm["buses"]["imu_spi"]["miso"]
    assert any("bus imu_spi: missing miso" in p for p in _broken(pinmap, edit))


def test_checker_reports_bus_pin_without_its_function(pinmap):
    def edit(pm):
        pm["buses"]["imu_spi"]["cs"] = "led"
    problems = _broken(pinmap, edit)
    assert any("signal led lacks function spi3.cs" in p for p in problems), problems


def test_checker_reports_wrong_spi_mode_for_the_afe(pinmap):
    def edit(pm):
        pm["buses"]["afe_spi"]["phase"] = 0
    assert any("SPI mode 1" in p for p in _broken(pinmap, edit))


def test_checker_reports_baudrate_above_device_limit(pinmap):
    def edit(pm):
        pm["buses"]["afe_spi"]["baudrate"] = 40_000_000
    assert any("above the ADS1294R limit" in p for p in _broken(pinmap, edit))


def test_checker_reports_counter_edge_mismatch(pinmap):
    def edit(pm):
        pm["counters"]["afe_drdy"]["edge"] = "rising"
    assert any("must see the same edges" in p for p in _broken(pinmap, edit))


def test_checker_reports_counter_on_an_output(pinmap):
    def edit(pm):
        _signal(pm, "afe_drdy")["direction"] = "out"
    assert any("pcnt.unit0 needs an input" in p for p in _broken(pinmap, edit))


@pytest.mark.parametrize("matrix, expected", [
    ([[0, 0, 1], [-1, 0, 0], [0, 1, 0]], "determinant -1"),
    ([[1, 0, 0], [1, 0, 0], [0, 0, 1]], "not orthonormal"),
    ([[2, 0, 0], [0, 1, 0], [0, 0, 1]], "entries must be -1, 0 or 1"),
    ([[1, 0, 0], [0, 1, 0]], "3x3"),
])
def test_checker_reports_bad_mounting(pinmap, matrix, expected):
    def edit(pm):
        pm["imu_mounting"]["sensor_to_body"] = matrix
    assert any(expected in p for p in _broken(pinmap, edit))


def test_generator_refuses_a_broken_map(tmp_path, monkeypatch, capsys):
    bad = gen_pins.load_pinmap()
    _signal(bad, "led")["gpio"] = 0
    path = tmp_path / "pinmap.json"
    path.write_text(json.dumps(bad))
    out = tmp_path / "pins.py"
    monkeypatch.setattr(gen_pins, "PINMAP", path)
    monkeypatch.setattr(gen_pins, "PINS_PY", out)
    assert gen_pins.main([]) == 1
    assert not out.exists()
    assert "strapping pin" in capsys.readouterr().err


# --- power budget ---------------------------------------------------------------------------------

def test_streaming_battery_life_meets_target():
    budget = battery_life.load_budget()
    assert budget["battery"]["target_streaming_h"] >= 10
    for name in ("streaming", "streaming_pessimistic"):
        assert battery_life.battery_life_h(budget, name) >= budget["battery"]["target_streaming_h"], name


def test_battery_life_arithmetic():
    budget = {"battery": {"capacity_mah": 1000, "usable_fraction": 0.8},
              "modes": {"m": {"loads": [{"part": "a", "ma": 30.0, "duty": 1.0},
                                        {"part": "b", "ma": 100.0, "duty": 0.1}]}}}
    assert battery_life.battery_life_h(budget, "m") == pytest.approx(800 / 40)
    budget["modes"]["m"]["loads"][1]["duty"] = 1.5
    with pytest.raises(ValueError, match="duty"):
        battery_life.battery_life_h(budget, "m")


def test_every_load_names_its_source():
    for mode in battery_life.load_budget()["modes"].values():
        for load in mode["loads"]:
            assert load["source"].strip() and isinstance(load["estimate"], bool), load["part"]


# --- documents that repeat pin facts --------------------------------------------------------------

def _netlist_nets() -> dict[str, list[str]]:
    nets = {}
    for raw in (REPO / "hardware" / "netlist.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" in line and not line.startswith("["):
            name, members = line.split(":", 1)
            nets[name.strip()] = members.split()
    return nets


def test_netlist_agrees_with_the_pinmap(pinmap):
    nets = _netlist_nets()
    where_is = {}
    for name, members in nets.items():
        for m in members:
            if m.startswith("U1.IO"):
                assert m not in where_is, f"{m} is on nets {where_is[m]} and {name}"
                where_is[m] = name
    for sig in pinmap["signals"]:
        assert where_is.get(f"U1.IO{sig['gpio']}") == sig["name"].upper(), sig["name"]
    # Every MCU pin in the netlist is either a pin-map signal or a reserved pin.
    reserved = {g for entry in pinmap["reserved"] for g in entry["gpio"]}
    signal_gpios = {s["gpio"] for s in pinmap["signals"]}
    for member in where_is:
        gpio = int(member[len("U1.IO"):])
        assert gpio in signal_gpios or gpio in reserved, member


@pytest.mark.parametrize("name", ["wiring.svg", "electrodes.svg"])
def test_drawings_are_valid_svg(name):
    import xml.etree.ElementTree as ET

    root = ET.parse(REPO / "hardware" / name).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.find("{http://www.w3.org/2000/svg}title") is not None


def test_wiring_drawing_shows_the_pinmap_gpios(pinmap):
    text = (REPO / "hardware" / "wiring.svg").read_text()
    for sig in pinmap["signals"]:
        assert f"IO{sig['gpio']}" in text, sig["name"]
