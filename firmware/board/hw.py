# The one place that constructs hardware objects. Everything else gets them passed in.
#
#   board = hw.build()
#   board.afe_spi, board.afe_cs, board.afe_drdy, board.afe_start, board.afe_reset_n,
#   board.afe_pwdn_n      - ADS1294R bus (SPI mode 1) and control pins (all outputs idle-safe)
#   board.drdy_counter    - machine.Counter (ESP32 PCNT) counting DRDY falling edges: the device clock
#   board.imu_spi, board.imu_cs, board.imu_int1 - ICM-42688-P bus (SPI mode 3) and INT1
#   board.imu_bus         - alias of imu_spi (the bus the IMU driver takes)
#   board.imu_to_body     - 3x3 integer mounting matrix, body = M @ sensor
#   board.button, board.led, board.battery_adc
#   board.battery_uv()    - battery voltage in uV (divider undone)
#   board.wdt_factory(timeout_ms) -> machine.WDT (not started here: a started WDT cannot be stopped)
#   board.afe_driver() / board.imu_driver() - the drivers on these buses
#   board.device_id       - 6 bytes from machine.unique_id(): the id the device authenticates with
# Pin levels follow board/pins.py: CS high (deselected), START low, PWDN low (AFE powered down until
# the driver starts it), RESET high.
from machine import ADC, SPI, WDT, Counter, Pin, unique_id

from board import pins


class Board:
    pass


def _wdt(timeout_ms):
    return WDT(timeout=timeout_ms)


def build():
    b = Board()
    b.device_id = bytes(unique_id()[-6:])  # the chip's base MAC: what provisioning records
    b.afe_cs = Pin(pins.AFE_CS, Pin.OUT, value=1 - pins.AFE_CS_ACTIVE)
    b.afe_start = Pin(pins.AFE_START, Pin.OUT, value=1 - pins.AFE_START_ACTIVE)
    b.afe_reset_n = Pin(pins.AFE_RESET_N, Pin.OUT, value=1 - pins.AFE_RESET_N_ACTIVE)
    b.afe_pwdn_n = Pin(pins.AFE_PWDN_N, Pin.OUT, value=pins.AFE_PWDN_N_ACTIVE)
    b.afe_spi = SPI(pins.AFE_SPI_ID, baudrate=pins.AFE_SPI_BAUDRATE, polarity=pins.AFE_SPI_POLARITY,
                    phase=pins.AFE_SPI_PHASE, bits=8, firstbit=SPI.MSB, sck=Pin(pins.AFE_SCK),
                    mosi=Pin(pins.AFE_MOSI), miso=Pin(pins.AFE_MISO))
    b.afe_drdy = Pin(pins.AFE_DRDY, Pin.IN, Pin.PULL_UP)
    edge = Counter.FALLING if pins.AFE_DRDY_COUNTER_FALLING else Counter.RISING
    b.drdy_counter = Counter(pins.AFE_DRDY_COUNTER_ID, b.afe_drdy, edge=edge)

    b.imu_cs = Pin(pins.IMU_CS, Pin.OUT, value=1 - pins.IMU_CS_ACTIVE)
    b.imu_spi = SPI(pins.IMU_SPI_ID, baudrate=pins.IMU_SPI_BAUDRATE, polarity=pins.IMU_SPI_POLARITY,
                    phase=pins.IMU_SPI_PHASE, bits=8, firstbit=SPI.MSB, sck=Pin(pins.IMU_SCK),
                    mosi=Pin(pins.IMU_MOSI), miso=Pin(pins.IMU_MISO))
    b.imu_bus = b.imu_spi
    b.imu_int1 = Pin(pins.IMU_INT1, Pin.IN)
    b.imu_to_body = pins.IMU_TO_BODY

    b.button = Pin(pins.BUTTON, Pin.IN, Pin.PULL_UP)
    b.led = Pin(pins.LED, Pin.OUT, value=1 - pins.LED_ACTIVE)
    b.battery_adc = ADC(Pin(pins.VBAT_SENSE), atten=ADC.ATTN_11DB)

    def battery_uv():
        return (b.battery_adc.read_uv() * pins.VBAT_SENSE_DIVIDER_TOTAL_OHM
                // pins.VBAT_SENSE_DIVIDER_BOTTOM_OHM)

    b.battery_uv = battery_uv
    b.wdt_factory = _wdt

    def afe_driver():
        from drivers.ads1294 import Ads1294
        return Ads1294(b.afe_spi, b.afe_cs, start=b.afe_start, reset_n=b.afe_reset_n,
                       pwdn_n=b.afe_pwdn_n)

    def imu_driver():
        from drivers.icm42688 import Icm42688
        return Icm42688(b.imu_spi, b.imu_cs)

    b.afe_driver = afe_driver
    b.imu_driver = imu_driver
    return b
