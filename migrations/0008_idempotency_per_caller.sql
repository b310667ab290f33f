-- An Idempotency-Key belongs to the caller that sent it: two pipelines that
-- happen to pick the same key (a build number, say) must neither replay each
-- other's release nor be refused for sending "the same key with another body".
ALTER TABLE idempotency_keys ADD COLUMN actor TEXT NOT NULL DEFAULT '';
-- Keys stored before this belonged to whoever created the rollout they answered.
UPDATE idempotency_keys k SET actor = r.created_by
  FROM rollouts r WHERE r.id = (k.response_body->>'id')::uuid;
ALTER TABLE idempotency_keys ALTER COLUMN actor DROP DEFAULT;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (actor, key);
