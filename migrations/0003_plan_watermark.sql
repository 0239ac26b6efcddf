-- Fast no-op planning: a session found fully up to date remembers a watermark of everything its
-- plan depended on (config digest, software versions, last file change, newest run and force).
-- While the watermark still matches, planning it again is skipped.
ALTER TABLE sessions ADD COLUMN plan_watermark TEXT;
ALTER TABLE sessions ADD COLUMN plan_summary TEXT;
