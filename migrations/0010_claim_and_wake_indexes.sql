-- The rollouts an engine drives right now: a lease is cleared when its
-- tick ends, so this index holds about as many rows as ticks in flight.
-- The claim, which runs after every tick, reads it to learn when a leased
-- rollout is due again instead of reading every rollout with a wake time.
CREATE INDEX rollouts_leased ON rollouts (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

-- A watch event names a namespace; waking the rollouts that look at it
-- starts from the applications deployed there, which without this index
-- meant reading every application on every batch of watch events.
CREATE INDEX applications_by_namespace ON applications (namespace);
