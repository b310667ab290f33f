-- Meridian's core model. Migrations are append-only: change the schema in a
-- new file, never by editing this one.

CREATE TABLE clusters (
    name        TEXT PRIMARY KEY,
    region      TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    labels      JSONB NOT NULL DEFAULT '{}',
    -- The kubeconfig context on the server's side; credentials never live here.
    context     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE plans (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    -- The plan as written (for display and diffing) and as parsed.
    spec        JSONB NOT NULL,
    plan        JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

CREATE TABLE applications (
    name        TEXT PRIMARY KEY,
    namespace   TEXT NOT NULL,
    plan_name   TEXT NOT NULL,
    templates   JSONB NOT NULL,
    parameters  JSONB NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE releases (
    id          UUID PRIMARY KEY,
    application TEXT NOT NULL REFERENCES applications (name),
    version     TEXT NOT NULL,
    image       TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (application, version)
);

CREATE TABLE rollouts (
    id              UUID PRIMARY KEY,
    release_id      UUID NOT NULL REFERENCES releases (id),
    application     TEXT NOT NULL REFERENCES applications (name),
    plan_name       TEXT NOT NULL,
    plan_version    INTEGER NOT NULL,
    state           TEXT NOT NULL,
    current_stage   INTEGER NOT NULL DEFAULT 0,
    -- The machine's rollout-level fields (bake start, pause origin, retry time, reason).
    machine         JSONB NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    -- Optimistic concurrency: every write checks and bumps it.
    version         BIGINT NOT NULL DEFAULT 0,
    -- When the engine should look at the rollout next; NULL when only an operator can move it.
    next_wake_at    TIMESTAMPTZ,
    -- The lease: which engine drives the rollout now, until when, and a
    -- fencing token that grows with every claim.
    lease_owner     TEXT,
    lease_expires_at TIMESTAMPTZ,
    lease_token     BIGINT NOT NULL DEFAULT 0,
    FOREIGN KEY (plan_name, plan_version) REFERENCES plans (name, version)
);

-- The engine's claim query reads only rollouts that are due.
CREATE INDEX rollouts_due ON rollouts (next_wake_at) WHERE next_wake_at IS NOT NULL;
CREATE INDEX rollouts_by_application ON rollouts (application, created_at DESC);

CREATE TABLE targets (
    rollout_id  UUID NOT NULL REFERENCES rollouts (id),
    cluster     TEXT NOT NULL,
    region      TEXT NOT NULL,
    stage       INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    state       TEXT NOT NULL,
    apply_seq   INTEGER,
    errors      INTEGER NOT NULL DEFAULT 0,
    message     TEXT,
    -- What the cluster ran before this rollout changed it (for rollback);
    -- recorded before the first apply.
    previous    JSONB,
    updated_at  TIMESTAMPTZ,
    PRIMARY KEY (rollout_id, cluster)
);

-- Operator actions wait here until the engine applies them in a tick.
CREATE TABLE rollout_actions (
    id           BIGSERIAL PRIMARY KEY,
    rollout_id   UUID NOT NULL REFERENCES rollouts (id),
    action       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    reason       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    processed_at TIMESTAMPTZ
);
CREATE INDEX rollout_actions_pending ON rollout_actions (rollout_id) WHERE processed_at IS NULL;

-- Append-only audit log.
CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    rollout_id  UUID REFERENCES rollouts (id),
    cluster     TEXT,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    message     TEXT NOT NULL,
    -- Which engine wrote it, under which lease token (proves single drivers).
    worker      TEXT,
    lease_token BIGINT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX events_by_rollout ON events (rollout_id, id);

CREATE FUNCTION events_are_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
