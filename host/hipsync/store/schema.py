"""SQLite schema of the session store (one definition; version in PRAGMA user_version).

Streams are stored one row per received frame, keyed by (session, seq) with the assembler's
unwrapped sequence number, so re-ingesting the same frames (a re-sync) inserts nothing twice.
Batch payloads are numpy int32 bytes, sample-major (n_samples, n_channels), in wire units
(envelope uV, pelvis centidegrees)."""

# 2: the reps table. A version-1 store is brought up to 2 when opened (the DDL is all
# CREATE ... IF NOT EXISTS, so running it again adds only what is missing); a host that still
# knows version 1 then refuses the store instead of syncing REP frames into nothing.
# 3: the synced table (which store session holds which device session, and what a damaged one
# lost), written in the same transaction as the session's rows, so an interrupted sync ingest
# leaves nothing or everything and a repeated one finds what it already stored.
SCHEMA_VERSION = 3

DDL = """
CREATE TABLE IF NOT EXISTS patients (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,          -- pseudonymous id; never a name
    created_at TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    patient INTEGER NOT NULL REFERENCES patients(id),
    device INTEGER NOT NULL REFERENCES devices(id),
    firmware_version TEXT NOT NULL DEFAULT '',
    started_at TEXT NOT NULL,
    emg_rate_hz REAL NOT NULL,
    envelope_rate_hz REAL NOT NULL,
    pelvis_rate_hz REAL NOT NULL,
    filters_json TEXT NOT NULL DEFAULT '{}',
    notes TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_by_patient ON sessions(patient, started_at);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    session INTEGER NOT NULL REFERENCES sessions(id),
    name TEXT NOT NULL,
    t_start_s REAL NOT NULL,            -- device time, s (clock ticks / 1000)
    t_end_s REAL NOT NULL,
    UNIQUE (session, name, t_start_s)
);
CREATE TABLE IF NOT EXISTS calibrations (
    session INTEGER PRIMARY KEY REFERENCES sessions(id),
    standing_obliquity_deg REAL,
    standing_tilt_deg REAL,
    standing_rotation_deg REAL,
    mvc_l_gmed_uv REAL,                 -- NULL: no MVC recorded for that muscle
    mvc_r_gmed_uv REAL,
    mvc_l_es_uv REAL,
    mvc_r_es_uv REAL,
    source TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS electrode_placement (
    session INTEGER NOT NULL REFERENCES sessions(id),
    channel TEXT NOT NULL,              -- l_gmed | r_gmed | l_es | r_es | '*' (electrode type)
    description_json TEXT NOT NULL,
    PRIMARY KEY (session, channel)
);
CREATE TABLE IF NOT EXISTS normalisation (
    session INTEGER PRIMARY KEY REFERENCES sessions(id),
    method TEXT NOT NULL                -- 'MVC' (requested); analysis reports what it used
);
CREATE TABLE IF NOT EXISTS batches (
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type INTEGER NOT NULL,              -- hipwire.frames ENVELOPE / PELVIS / RAW_EMG
    clock INTEGER NOT NULL,             -- unwrapped ticks of the first sample
    period_ticks INTEGER NOT NULL,
    n_samples INTEGER NOT NULL,
    n_channels INTEGER NOT NULL,
    data BLOB NOT NULL,
    host_time_s REAL NOT NULL,
    late INTEGER NOT NULL,
    clock_suspect INTEGER NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_by_clock ON batches(session, type, clock);
CREATE TABLE IF NOT EXISTS events (
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    clock INTEGER NOT NULL,
    kind TEXT NOT NULL,                 -- IC | FC
    side TEXT NOT NULL,                 -- L | R
    stride INTEGER NOT NULL,
    host_time_s REAL NOT NULL,
    clock_suspect INTEGER NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reps (
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    clock INTEGER NOT NULL,             -- unwrapped ticks of the repetition's start
    task TEXT NOT NULL,                 -- hipwire.commands.EXAM_TASKS name
    side TEXT NOT NULL,                 -- stance side L | R
    rep_index INTEGER NOT NULL,         -- the device's count within the task, from 0
    low_clock INTEGER NOT NULL,         -- unwrapped ticks of the lowest point / peak
    end_clock INTEGER NOT NULL,
    flags INTEGER NOT NULL,             -- hipwire.frames REP_TRUNCATED | REP_SHALLOW
    depth INTEGER NOT NULL,             -- hipwire.frames.REP_DEPTH_UNITS of the task (mm, cdeg)
    host_time_s REAL NOT NULL,
    clock_suspect INTEGER NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS status (
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    clock INTEGER NOT NULL,
    fields_json TEXT NOT NULL,
    host_time_s REAL NOT NULL,
    clock_suspect INTEGER NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS synced (
    device INTEGER NOT NULL REFERENCES devices(id),
    device_session INTEGER NOT NULL,    -- the id in the device's flash log
    crc32 INTEGER NOT NULL,             -- the CRC-32 the device lists the session with
    session INTEGER NOT NULL UNIQUE REFERENCES sessions(id),
    damage_json TEXT,                   -- NULL: intact; else what was salvaged and what was lost
    PRIMARY KEY (device, device_session, crc32)
);
CREATE TABLE IF NOT EXISTS link_stats (
    session INTEGER PRIMARY KEY REFERENCES sessions(id),
    stats_json TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""
