-- The outbox is pruned by age (saga-orchestrator --outbox-retention).
CREATE INDEX outbox_created_at ON outbox (created_at);
