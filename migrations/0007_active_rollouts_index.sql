-- The active rollouts of an application: asked when a release is created
-- (reject or queue) and when a pending rollout is claimed (is it queued?).
-- Without it those questions read the application's whole history.
CREATE INDEX rollouts_active ON rollouts (application)
    WHERE state NOT IN ('succeeded', 'rolled_back', 'failed', 'aborted');
