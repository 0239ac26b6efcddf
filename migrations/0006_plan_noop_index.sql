-- Linear no-op planning at archive scale: the newest run of a session is one index seek. The
-- index step_runs_lookup begins with session_id but holds step and unit before id, so the newest
-- run of every session was found by scanning every run of the archive (2 M rows at 10,000
-- sessions); an index on session_id alone ends in the row id, and MAX(id) per session reads one
-- entry of it.
CREATE INDEX IF NOT EXISTS step_runs_session ON step_runs(session_id);
