"""Typed errors of the session store, analysis, report and exports. Each message says what went
wrong and what the user can do about it."""

from __future__ import annotations


class HipsyncDataError(Exception):
    """Base of every error about stored sessions and their outputs."""


class StoreError(HipsyncDataError):
    """The store file cannot be used."""


class CorruptStore(StoreError):
    def __init__(self, path, detail: str):
        super().__init__(
            f"{path} is not a readable hipsync session store ({detail}). Check the path (set "
            f"HIPSYNC_STORE or pass --store), or move the file aside so a new store can be created.")
        self.path = path


class StoreVersionError(StoreError):
    def __init__(self, path, found: int, supported: int):
        super().__init__(f"{path} has store schema version {found}; this hipsync reads up to "
                         f"{supported}. Upgrade hipsync to open it.")


class UnknownSession(HipsyncDataError):
    def __init__(self, session_id, known: list[int] | None = None):
        hint = (f" Known sessions: {', '.join(map(str, known[-10:]))}." if known
                else " The store holds no sessions yet.")
        super().__init__(f"No session {session_id!r} in this store.{hint} "
                         f"List them with `hipsync sessions`.")
        self.session_id = session_id


class UnknownPatient(HipsyncDataError):
    def __init__(self, patient_id):
        super().__init__(f"No patient {patient_id!r} in this store. Patient ids are the pseudonymous "
                         f"codes entered when a session was created.")
        self.patient_id = patient_id


class MissingCalibration(HipsyncDataError):
    def __init__(self, session_id, detail: str):
        super().__init__(
            f"Session {session_id} has no standing calibration ({detail}). Pelvic drop is measured "
            f"against the person's own quiet-standing posture: record a 'standing' task of at "
            f"least 3 s before walking, or enter the standing angles for this session.")
        self.session_id = session_id


class NoGaitData(HipsyncDataError):
    def __init__(self, session_id, detail: str):
        super().__init__(f"Session {session_id} cannot be analysed: {detail}.")


class OutputNotWritable(HipsyncDataError):
    def __init__(self, path, detail: str):
        super().__init__(f"Cannot write to {path} ({detail}). Choose a folder you can write to, "
                         f"e.g. with --out.")
        self.path = path
