# The real ADS1294R and ICM-42688-P drivers against the unix board's fake chips (MicroPython).
import machine

import chip_feed
import hardware_clock
from board import hw, pins
from drivers import ads1294, icm42688


def _no_delay(ms):
    pass


def _setup():
    clock = hardware_clock.install()
    board = hw.build()
    afe = ads1294.Ads1294(board.afe_spi, board.afe_cs, board.afe_start, board.afe_reset_n,
                          board.afe_pwdn_n, delay_ms=_no_delay)
    imu = icm42688.Icm42688(board.imu_spi, board.imu_cs, delay_ms=_no_delay)
    return clock, board, afe, imu


def test_afe_power_up_and_configuration_registers():
    clock, board, afe, _ = _setup()
    afe.begin()
    regs = clock.afe.regs
    assert afe.device_id == 0xD0
    assert regs[ads1294.REG_CONFIG1] == 0x85  # HR, 1 kSPS
    assert regs[ads1294.REG_CONFIG2] == 0x00
    assert regs[ads1294.REG_CONFIG3] == 0xCC  # internal 2.4 V reference, RLD on
    assert regs[ads1294.REG_LOFF] == 0x03  # DC lead-off
    for ch in range(4):
        assert regs[ads1294.REG_CH1SET + ch] == 0x60, ch  # gain 12, normal input
    for reg in (ads1294.REG_RLD_SENSP, ads1294.REG_RLD_SENSN, ads1294.REG_LOFF_SENSP,
                ads1294.REG_LOFF_SENSN):
        assert regs[reg] == 0x0F, reg
    assert regs[ads1294.REG_CONFIG4] == 0x02
    assert clock.afe.rate_ok()
    assert not clock.afe.rdatac  # SDATAC sent before register access
    assert clock.afe.ignored == 0
    assert machine.board_pin(pins.AFE_PWDN_N).level == 1
    assert machine.board_pin(pins.AFE_RESET_N).level == 1
    assert not clock.afe.converting()


def test_afe_without_chip_raises_typed_error():
    board = hw.build()  # nothing attached: MISO floats high
    afe = ads1294.Ads1294(board.afe_spi, board.afe_cs, delay_ms=_no_delay)
    try:
        afe.power_up()
    except ads1294.AfeError as e:
        assert "0xff" in str(e)
    else:
        raise AssertionError("power_up() accepted a missing AFE")


def test_afe_rdatac_frames_decode_to_the_fed_codes():
    clock, board, afe, _ = _setup()
    afe.begin()
    afe.start_continuous()
    assert clock.afe.converting() and clock.afe.rdatac
    frame = bytearray(ads1294.FRAME_BYTES)
    for k in range(600):
        clock.advance(1)
        afe.read_frame_into(frame)
        assert frame[0] & 0xF0 == 0xC0
        for c in range(4):
            assert ads1294.frame_code(frame, c) == chip_feed.pattern_code(k, c), (k, c)
        assert ads1294.leadoff_mask(frame) == chip_feed.pattern_leadoff(k), k
    assert board.drdy_counter.value() == 600
    afe.stop()
    assert not clock.afe.converting() and not clock.afe.rdatac
    assert clock.advance(10) == 0  # no DRDY once stopped


def test_afe_rejects_wrong_spi_mode():
    clock, board, _, _ = _setup()
    bad = machine.SPI(pins.AFE_SPI_ID, baudrate=1000000, polarity=0, phase=0)
    afe = ads1294.Ads1294(bad, board.afe_cs, delay_ms=_no_delay)
    try:
        afe.read_reg(0)
    except OSError as e:
        assert "mode 0" in str(e)
    else:
        raise AssertionError("the fake ADS1294R answered in SPI mode 0")


def test_imu_configuration_registers():
    clock, board, _, imu = _setup()
    imu.begin()
    imu.start()
    r = clock.imu.regs
    assert imu.read_reg(icm42688.REG_WHO_AM_I) == 0x47
    assert r[icm42688.REG_INTF_CONFIG0] == 0x33
    assert r[icm42688.REG_GYRO_CONFIG0] == 0x28  # +-1000 dps, 100 Hz
    assert r[icm42688.REG_ACCEL_CONFIG0] == 0x28  # +-8 g, 100 Hz
    assert r[icm42688.REG_TMST_CONFIG] == 0x29  # 16 us timestamps, reserved bit 5 kept
    assert r[icm42688.REG_FIFO_CONFIG1] == 0x0F
    assert r[icm42688.REG_FIFO_CONFIG] == 0x80  # STOP-on-FULL
    assert r[icm42688.REG_PWR_MGMT0] == 0x0F
    assert r[icm42688.REG_FIFO_CONFIG2] | (r[icm42688.REG_FIFO_CONFIG3] << 8) == 80
    assert r[icm42688.REG_INT_SOURCE0] == 0x04
    imu.stop()
    assert r[icm42688.REG_PWR_MGMT0] == 0


def test_imu_without_chip_raises_typed_error():
    board = hw.build()
    imu = icm42688.Icm42688(board.imu_spi, board.imu_cs, delay_ms=_no_delay)
    try:
        imu.begin()
    except icm42688.ImuError as e:
        assert "WHO_AM_I" in str(e)
    else:
        raise AssertionError("begin() accepted a missing IMU")


def test_imu_fifo_packets_timestamps_and_int1():
    clock, board, _, imu = _setup()
    imu.begin()
    imu.start()
    clock.advance(49)
    assert imu.fifo_bytes() == 4 * icm42688.PACKET_BYTES
    assert board.imu_int1.value() == 0  # below the 5-packet watermark
    clock.advance(1)
    assert board.imu_int1.value() == 1
    assert imu.fifo_bytes() == 5 * icm42688.PACKET_BYTES
    pkt = bytearray(icm42688.PACKET_BYTES)
    last_ts = None
    imu.fifo_begin()
    for k in range(5):
        imu.fifo_read_packet(pkt)
        assert pkt[0] == 0x68
        for a in range(6):
            v = (pkt[1 + 2 * a] << 8) | pkt[2 + 2 * a]
            v = v - 0x10000 if v & 0x8000 else v
            assert v == chip_feed.pattern_imu(k, a), (k, a)
        ts = (pkt[14] << 8) | pkt[15]
        if last_ts is not None:
            assert (ts - last_ts) & 0xFFFF == icm42688.TS_PER_SAMPLE_100HZ
        last_ts = ts
    imu.fifo_end()
    assert imu.fifo_bytes() == 0
    assert board.imu_int1.value() == 0


def test_imu_fifo_status_reads_status_and_count_in_one_transfer():
    clock, _, _, imu = _setup()
    imu.begin()
    imu.start()
    clock.advance(30)
    st = imu.fifo_status()
    assert st >> 8 == 3 * icm42688.PACKET_BYTES
    assert st & icm42688.INT_STATUS_FIFO_FULL == 0
    clock.advance(10 * 200)  # overflows: FIFO_FULL is reported once, with the full count
    st = imu.fifo_status()
    assert st & icm42688.INT_STATUS_FIFO_FULL and st >> 8 == icm42688.FIFO_BYTES
    st = imu.fifo_status()
    assert st & icm42688.INT_STATUS_FIFO_FULL == 0 and st >> 8 == icm42688.FIFO_BYTES


def test_imu_fifo_full_sets_int_status_and_keeps_oldest():
    clock, _, _, imu = _setup()
    imu.begin()
    imu.start()
    clock.advance(10 * 200)
    assert imu.int_status() & icm42688.INT_STATUS_FIFO_FULL
    assert imu.int_status() & icm42688.INT_STATUS_FIFO_FULL == 0  # clears on read
    assert imu.fifo_bytes() == icm42688.FIFO_BYTES
    assert clock.imu.dropped == 200 - icm42688.FIFO_PACKETS
    pkt = bytearray(icm42688.PACKET_BYTES)
    imu.fifo_begin()
    imu.fifo_read_packet(pkt)
    imu.fifo_end()
    assert ((pkt[1] << 8) | pkt[2]) == chip_feed.pattern_imu(0, 0) & 0xFFFF  # oldest kept


def test_board_build_constructs_everything_from_pins():
    board = hw.build()
    for name in ("afe_spi", "afe_cs", "afe_drdy", "afe_start", "afe_reset_n", "afe_pwdn_n",
                 "drdy_counter", "imu_spi", "imu_bus", "imu_cs", "imu_int1", "button", "led",
                 "battery_adc", "wdt_factory", "imu_to_body"):
        assert hasattr(board, name), name
    assert board.afe_cs.value() == 1 and board.imu_cs.value() == 1
    assert board.afe_start.value() == 0 and board.afe_pwdn_n.value() == 0
    assert board.afe_spi.mode == 1 and board.imu_spi.mode == 3
    machine.board_set_voltage_uv(pins.VBAT_SENSE, 1900000)
    assert board.battery_uv() == 3800000
    wdt = board.wdt_factory(2000)
    wdt.feed()
    wdt.feed()
    assert wdt.feeds == 2 and wdt.timeout_ms == 2000 and not wdt.expired()
    # The DRDY counter counts falling edges only.
    machine.board_drive(pins.AFE_DRDY, 0)
    machine.board_drive(pins.AFE_DRDY, 1)
    assert board.drdy_counter.value() == 1


def test_board_built_before_the_fake_chips_are_installed():
    board = hw.build()  # the app may build its board first; the fakes then join the same buses
    clock = hardware_clock.install()
    afe = ads1294.Ads1294(board.afe_spi, board.afe_cs, board.afe_start, board.afe_reset_n,
                          board.afe_pwdn_n, delay_ms=_no_delay)
    afe.begin()
    afe.start_continuous()
    assert clock.advance(25) == 25
    assert board.drdy_counter.value() == 25
