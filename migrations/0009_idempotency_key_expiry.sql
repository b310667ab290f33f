-- Idempotency keys are forgotten a day after they were first used (see
-- src/store/idempotency.rs); this finds the old ones without reading all.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
