DROP TRIGGER users_updated ON users;
DROP FUNCTION users_announce();
DROP TRIGGER sessions_deleted ON sessions;
DROP TRIGGER sessions_ended ON sessions;
DROP TRIGGER sessions_started ON sessions;
DROP FUNCTION sessions_announce();
DROP FUNCTION authgraph_announce(text, uuid, uuid, text);
