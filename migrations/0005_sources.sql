-- Source finding (issue 14): every source PyBDSF found in each final target image, and the check of
-- each image's sources against the reference catalogue ([qa] reference_catalogue).
CREATE TABLE sources (
    id             INTEGER PRIMARY KEY,
    session_id     INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    run_id         INTEGER,
    field          TEXT NOT NULL,
    lo             TEXT NOT NULL,
    image          TEXT NOT NULL,            -- the FITS file searched
    pbcor          INTEGER NOT NULL DEFAULT 0,  -- 1: primary-beam corrected image
    source_id      INTEGER,
    island         INTEGER,
    ra_deg         REAL,
    dec_deg        REAL,
    ra_err_arcsec  REAL,
    dec_err_arcsec REAL,
    flux_jy        REAL,
    flux_err_jy    REAL,
    peak_jy        REAL,
    peak_err_jy    REAL,
    major_arcsec   REAL,
    minor_arcsec   REAL,
    pa_deg         REAL,
    rms_jy         REAL,
    snr            REAL,
    code           TEXT,                     -- PyBDSF S_Code: S single, M multiple, C complex
    created        REAL NOT NULL
);
CREATE INDEX sources_session ON sources(session_id, field, lo);
CREATE INDEX sources_position ON sources(dec_deg);

CREATE TABLE source_checks (
    session_id     INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    field          TEXT NOT NULL,
    lo             TEXT NOT NULL,
    run_id         INTEGER,
    image          TEXT NOT NULL,
    n_sources      INTEGER,
    reference      TEXT,                     -- JSON: the reference check (matched, offsets, flux ratio), or NULL
    created        REAL NOT NULL,
    PRIMARY KEY (session_id, field, lo)
);
