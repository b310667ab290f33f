-- Every gate evaluation, kept so the dashboard can plot readings over time
-- and a failed gate can be explained.
CREATE TABLE gate_readings (
    id          BIGSERIAL PRIMARY KEY,
    rollout_id  UUID NOT NULL REFERENCES rollouts (id),
    -- The stage being baked; NULL for the pre-rollout check.
    stage       INTEGER,
    gate        TEXT NOT NULL,
    cluster     TEXT NOT NULL,
    value       DOUBLE PRECISION,
    baseline    DOUBLE PRECISION,
    threshold   DOUBLE PRECISION,
    verdict     TEXT NOT NULL,
    detail      TEXT,
    query       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX gate_readings_by_rollout ON gate_readings (rollout_id, id);
