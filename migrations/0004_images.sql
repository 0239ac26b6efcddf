-- Every image a session's run made, with the figures that say how good it is (issue 16): the 1GC
-- target image made by self-calibration's first round, the final image of every field and LO, and
-- its primary-beam corrected version. Replaced with the run of the step that made them.
CREATE TABLE images (
    id                INTEGER PRIMARY KEY,
    session_id        INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    run_id            INTEGER REFERENCES step_runs(id) ON DELETE SET NULL,
    step              TEXT NOT NULL,          -- selfcal | image
    field             TEXT NOT NULL,
    lo                TEXT NOT NULL,
    kind              TEXT NOT NULL,          -- 1gc | selfcal | pbcor
    path              TEXT,                   -- FITS
    residual_path     TEXT,                   -- FITS of the residual image
    rms_jy            REAL,
    peak_jy           REAL,
    dynamic_range     REAL,
    beam_major_arcsec REAL,
    beam_minor_arcsec REAL,
    beam_pa_deg       REAL,
    selfcal_rounds    INTEGER NOT NULL DEFAULT 0,
    mask              TEXT,                   -- how the clean mask was made
    note              TEXT,                   -- e.g. why self-calibration stopped
    created           REAL NOT NULL
);
CREATE INDEX images_lookup ON images(session_id, field, lo);
