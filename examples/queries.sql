-- Example queries against the atarchive catalogue (sqlite3 catalogue.db < examples/queries.sql).
-- tests/test_cli.py runs every statement here against a real catalogue.

-- Sessions and how far each got: the newest run of every step.
SELECT s.key, s.ingest_state, r.step, r.status, r.reason
FROM sessions s
LEFT JOIN step_runs r ON r.session_id = s.id
  AND r.id = (SELECT MAX(id) FROM step_runs WHERE session_id = s.id AND step = r.step AND unit = r.unit)
ORDER BY s.key, r.step;

-- Files that could not be indexed, with the reason.
SELECT s.key, f.path, f.error FROM files f JOIN sessions s ON s.id = f.session_id WHERE f.status = 'error';

-- Frequency coverage per session and LO.
SELECT s.key, l.name AS lo, l.freq_start_hz / 1e6 AS start_mhz, l.freq_end_hz / 1e6 AS end_mhz, l.nchan
FROM los l JOIN sessions s ON s.id = l.session_id ORDER BY s.key, l.name;

-- Flux-calibrator measurements against the Perley-Butler 2017 model.
SELECT s.key, m.field, m.lo, m.freq_hz / 1e6 AS freq_mhz, m.flux_jy, m.model_flux_jy,
       m.flux_jy / m.model_flux_jy AS ratio
FROM flux_measurements m JOIN sessions s ON s.id = m.session_id
WHERE m.model_flux_jy IS NOT NULL ORDER BY s.key, m.freq_hz;

-- Time spent per step (seconds), over all sessions.
SELECT step, COUNT(*) AS runs, ROUND(SUM(finished - started), 1) AS seconds
FROM step_runs WHERE status = 'done' GROUP BY step ORDER BY seconds DESC;
