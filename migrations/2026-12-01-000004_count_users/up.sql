-- `users { totalCount }` reads this one row instead of counting the table: count(*) over
-- a million accounts scans them all, and one request may ask for it many times.
-- Statement-level triggers keep it exact, in the same transaction as the insert or
-- delete, at the price of one row update per statement however many rows it touches
-- (sign-ups are bounded by password hashing long before this row could be contended).
CREATE TABLE user_count (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT user_count_singleton CHECK (singleton),
    total     bigint  NOT NULL
);

INSERT INTO user_count (total) SELECT count(*) FROM users;

CREATE FUNCTION user_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_count SET total = total + (SELECT count(*) FROM inserted);
    RETURN NULL;
END
$$;

CREATE FUNCTION user_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_count SET total = total - (SELECT count(*) FROM deleted);
    RETURN NULL;
END
$$;

CREATE FUNCTION user_count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_count SET total = 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_counted_on_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION user_count_inserted();
CREATE TRIGGER users_counted_on_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION user_count_deleted();
CREATE TRIGGER users_counted_on_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION user_count_truncated();
