DROP TABLE rate_limit_events;
