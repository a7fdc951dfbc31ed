# The device's flash: the log of recorded sessions (records of hipwire.records, synced to the
# clinic's host) and the saved standing calibration (store.calibration).
from store.flashlog import (CrcMismatch, FlashFull, FlashLog, LogError, NotFound,  # noqa: F401
                            NotSynced, SessionOpen, SessionReader)
