-- Attempts counted by the brute-force limits (failed sign-ins per account and per IP,
-- sign-ups per IP). Kept in PostgreSQL so every instance on this database counts the
-- same attempts. Rows older than the longest window are pruned periodically.
CREATE TABLE rate_limit_events (
    id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bucket text        NOT NULL,
    key    text        NOT NULL,
    at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX rate_limit_events_bucket_key_at_idx ON rate_limit_events (bucket, key, at DESC);
CREATE INDEX rate_limit_events_at_idx ON rate_limit_events (at);
