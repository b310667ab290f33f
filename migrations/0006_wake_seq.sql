-- Counts wake-ups (a watched workload changed, an operator acted). A tick
-- remembers the count it was claimed with; if it moved while the tick ran,
-- the tick's own idea of when to look next must not overwrite the wake-up.
ALTER TABLE rollouts ADD COLUMN wake_seq bigint NOT NULL DEFAULT 0;
