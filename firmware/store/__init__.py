# The flash log of recorded sessions (records of hipwire.records, synced to the clinic's host).
from store.flashlog import (CrcMismatch, FlashFull, FlashLog, LogError, NotFound,  # noqa: F401
                            NotSynced, SessionOpen, SessionReader)
