-- Daemon health: one row per catalogue (the lock guarantees a single daemon).
CREATE TABLE daemon (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    pid        INTEGER NOT NULL,
    host       TEXT NOT NULL,
    started    REAL NOT NULL,
    heartbeat  REAL NOT NULL,
    activity   TEXT,
    stopped    REAL
);
