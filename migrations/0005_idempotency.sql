-- Retry safety for CI: a POST that creates something, sent again with the
-- same Idempotency-Key and body, answers what it answered the first time.
CREATE TABLE idempotency_keys (
    key             TEXT PRIMARY KEY,
    -- SHA-256 of the request body as parsed, to refuse a reused key with
    -- another body.
    request_hash    TEXT NOT NULL,
    response_status INTEGER,
    response_body   JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Queued rollouts (an application's next release while one is active) wait
-- with no wake time; these find the next one when the active one ends.
CREATE INDEX rollouts_queued ON rollouts (application, created_at) WHERE state = 'pending' AND next_wake_at IS NULL;
