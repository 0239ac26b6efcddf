-- atarchive catalogue, initial schema.
-- Never edit a migration that has shipped: add 0002_*.sql instead.

CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY,
    project      TEXT NOT NULL,
    name         TEXT NOT NULL,              -- session directory name, e.g. 2024-12-12-17:29:25
    key          TEXT NOT NULL UNIQUE,       -- "<project>/<name>", what users type
    path         TEXT NOT NULL UNIQUE,       -- session directory on storage
    root         TEXT NOT NULL,              -- storage root it was found under
    layout       TEXT,                       -- nested | flat | mixed
    ingest_state TEXT NOT NULL DEFAULT 'incomplete',  -- incomplete | ready | failed
    error        TEXT,                       -- last ingest or processing error shown to users
    first_seen   REAL NOT NULL,
    last_change  REAL NOT NULL,              -- last time a file of the session changed (unix s)
    last_scanned REAL
);

CREATE TABLE scans (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    stem        TEXT NOT NULL,
    mjd         INTEGER,
    sec_of_day  INTEGER,
    block       INTEGER,
    source      TEXT,                        -- source name parsed from the stem
    field       TEXT,                        -- field name from the header
    start_mjd   REAL,
    end_mjd     REAL,
    ntimes      INTEGER,
    complete    INTEGER NOT NULL DEFAULT 0,
    status_note TEXT,                        -- why not complete
    UNIQUE (session_id, stem)
);
CREATE INDEX scans_session ON scans(session_id);

CREATE TABLE fields (
    id                 INTEGER PRIMARY KEY,
    session_id         INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    ra_deg             REAL,
    dec_deg            REAL,
    role               TEXT,                 -- flux_cal | phase_cal | target (filled by planning)
    role_reason        TEXT,
    matched_calibrator TEXT,
    UNIQUE (session_id, name)
);

CREATE TABLE los (
    id            INTEGER PRIMARY KEY,
    session_id    INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,             -- A, B, ...
    freq_start_hz REAL,
    freq_end_hz   REAL,
    nchan         INTEGER,
    nsubbands     INTEGER,
    channel_width_hz REAL,
    UNIQUE (session_id, name)
);

CREATE TABLE files (
    id           INTEGER PRIMARY KEY,
    session_id   INTEGER REFERENCES sessions(id) ON DELETE CASCADE,
    scan_id      INTEGER REFERENCES scans(id) ON DELETE CASCADE,
    path         TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL DEFAULT 'uvh5',   -- uvh5 | dir (unreadable directory) | unknown
    lo           TEXT,
    subband      INTEGER,                    -- the C number of Lo<L>.C<cccc>
    size         INTEGER,
    mtime        REAL,
    stable_since REAL,                       -- when size/mtime were last seen to change
    status       TEXT NOT NULL,              -- ready | growing | error
    error        TEXT,
    nants_data   INTEGER,
    nants_telescope INTEGER,
    ntimes       INTEGER,
    nfreqs       INTEGER,
    npols        INTEGER,
    freq_start_hz REAL,
    freq_end_hz  REAL,
    channel_width_hz REAL,
    integration_s REAL,
    start_mjd    REAL,
    end_mjd      REAL,
    field        TEXT,
    ra_deg       REAL,
    dec_deg      REAL,
    header       TEXT                        -- JSON: the rest of what the header said
);
CREATE INDEX files_session ON files(session_id);
CREATE INDEX files_scan ON files(scan_id);

CREATE TABLE step_runs (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    unit        TEXT NOT NULL DEFAULT '',    -- e.g. "<stem>/LoA" for per scan-LO steps
    fingerprint TEXT NOT NULL,
    version     INTEGER NOT NULL,
    params      TEXT NOT NULL,               -- JSON
    inputs      TEXT NOT NULL,               -- JSON: input name -> fingerprint
    versions    TEXT NOT NULL,               -- JSON: software versions
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL,               -- running | done | failed | interrupted
    temporary   INTEGER NOT NULL DEFAULT 0,  -- failed with a temporary error (retryable)
    attempt     INTEGER NOT NULL DEFAULT 1,
    started     REAL NOT NULL,
    finished    REAL,
    error       TEXT,
    log_path    TEXT,
    owner       TEXT,                        -- host:pid of the reconciler that ran it
    worker_pid  INTEGER,
    result      TEXT                         -- JSON returned by the step
);
CREATE INDEX step_runs_lookup ON step_runs(session_id, step, unit, id);

CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    run_id      INTEGER REFERENCES step_runs(id) ON DELETE SET NULL,
    step        TEXT NOT NULL,
    unit        TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL,
    path        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    meta        TEXT,
    created     REAL NOT NULL
);
CREATE INDEX products_lookup ON products(session_id, step, unit);

CREATE TABLE forces (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    from_step   TEXT NOT NULL,
    created     REAL NOT NULL,
    note        TEXT
);
CREATE INDEX forces_session ON forces(session_id);

CREATE TABLE flux_measurements (
    id            INTEGER PRIMARY KEY,
    session_id    INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    run_id        INTEGER REFERENCES step_runs(id) ON DELETE SET NULL,
    field         TEXT NOT NULL,
    role          TEXT,
    lo            TEXT,
    freq_hz       REAL,
    flux_jy       REAL,
    flux_err_jy   REAL,
    peak_jy       REAL,
    rms_jy        REAL,
    model_flux_jy REAL,
    ra_deg        REAL,
    dec_deg       REAL,
    method        TEXT,
    created       REAL NOT NULL
);
CREATE INDEX flux_session ON flux_measurements(session_id);
