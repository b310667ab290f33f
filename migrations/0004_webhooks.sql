-- Webhooks: URLs that are told about events, and the record of every
-- delivery and every attempt, so receivers and operators can see what was
-- sent, when, and what came back.

CREATE TABLE webhooks (
    id             UUID PRIMARY KEY,
    url            TEXT NOT NULL,
    -- Event kinds (snake_case) this webhook wants; '*' means every kind.
    events         TEXT[] NOT NULL,
    -- Kept as written, not hashed: every delivery is signed with it (HMAC),
    -- which needs the secret itself. It is never served back by the API.
    secret         TEXT NOT NULL,
    format         TEXT NOT NULL CHECK (format IN ('json', 'slack')),
    -- Only events after this one are delivered, so registering a webhook
    -- does not replay the history written before it.
    after_event_id BIGINT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id               UUID PRIMARY KEY,
    webhook_id       UUID NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id         BIGINT NOT NULL REFERENCES events (id),
    state            TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- When the next attempt is due; NULL once the delivery is finished.
    next_attempt_at  TIMESTAMPTZ,
    last_status      INTEGER,
    last_error       TEXT,
    last_attempt_at  TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The lease of the replica sending it now; the token grows with every
    -- claim so a stale sender's outcome is refused.
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    lease_token      BIGINT NOT NULL DEFAULT 0,
    -- One delivery per webhook and event, however often fan-out runs.
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at DESC);

-- Every attempt's outcome: status (when the receiver answered) or error.
CREATE TABLE webhook_attempts (
    delivery_id UUID NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    duration_ms BIGINT NOT NULL,
    status      INTEGER,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- How far fan-out has read the event log: a single row, so a restarted or
-- second replica resumes exactly after the last event turned into deliveries.
CREATE TABLE webhook_cursor (
    singleton     BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    last_event_id BIGINT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO webhook_cursor (last_event_id) SELECT COALESCE(max(id), 0) FROM events;
