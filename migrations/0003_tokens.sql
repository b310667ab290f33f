-- Bearer API tokens. Only the SHA-256 of a token's secret is stored: a copy
-- of this table (a backup, a leaked dump) lets nobody call the API.
CREATE TABLE api_tokens (
    id            UUID PRIMARY KEY,
    -- Who the token stands for; recorded as the actor of what it does.
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'deployer', 'operator', 'admin')),
    -- Lowercase hex SHA-256 of the whole secret (prefix included); requests
    -- are authenticated by looking this up, so no secret is ever compared.
    secret_hash   TEXT NOT NULL UNIQUE,
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ,
    -- Revoked tokens stay, so the names in old events keep meaning something.
    revoked_at    TIMESTAMPTZ,
    -- Refreshed at most once a minute, so stale tokens can be found and revoked.
    last_used_at  TIMESTAMPTZ
);

-- A name identifies one live token: two tokens called `ci` would make the
-- audit trail ambiguous. A revoked token's name may be reused.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
