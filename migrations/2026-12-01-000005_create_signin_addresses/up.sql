-- Networks an account has signed in from with the right password. The account-wide
-- failure limit (distributed guessing) refuses unknown networks only, so an attacker
-- who locks a username out cannot lock its owner out from where they usually sign in.
-- Keyed by the lowercased username the limits count, pruned after 90 days unused.
CREATE TABLE signin_addresses (
    account         text        NOT NULL,
    network         text        NOT NULL,
    last_success_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, network)
);

CREATE INDEX signin_addresses_last_success_at_idx ON signin_addresses (last_success_at);
