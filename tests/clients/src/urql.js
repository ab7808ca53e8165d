import { Client, fetchExchange } from '@urql/core';
import { authExchange } from '@urql/exchange-auth';
import { cacheExchange } from '@urql/exchange-graphcache';
import { relayPagination } from '@urql/exchange-graphcache/extras';

const REFRESH = `mutation Refresh($refreshToken: String) {
  refresh(refreshToken: $refreshToken) { __typename accessToken refreshToken expiresIn }
}`;

/** Keeps a sign-in's or refresh's tokens, with when the access token expires. */
export function saveTokens(tokens, payload) {
  tokens.accessToken = payload.accessToken;
  tokens.refreshToken = payload.refreshToken;
  // A little early (30 s of 15 min), so a token never expires in flight.
  const margin = Math.min(30, payload.expiresIn / 10);
  tokens.expiresAt = Date.now() + (payload.expiresIn - margin) * 1000;
}

/**
 * urql for authgraph. `tokens` is filled by saveTokens() after signup/signin. The auth
 * exchange refreshes before a request when the token has expired (willAuthError),
 * holding every other request until the one refresh is done, and after a request
 * when the server answers UNAUTHENTICATED (didAuthError).
 */
export function createUrqlClient({ url, tokens, fetch = globalThis.fetch, onRefresh = () => {} }) {
  // The token of the last operation the server refused: if it is no longer the current
  // one, another operation has refreshed meanwhile, and this one is just sent again.
  let refusedToken;
  return new Client({
    url,
    fetch,
    // Cookie mode, API on another origin: fetchOptions: { credentials: 'include' }.
    exchanges: [
      // Normalized: every User is one record, User:<id>, whatever query brought it.
      // Types without an id are kept inside their parent.
      cacheExchange({
        keys: { AuthPayload: () => null, UserConnection: () => null, UserEdge: () => null, PageInfo: () => null },
        resolvers: {
          Query: {
            users: relayPagination(),
            // user(id) is the User:<id> record, so it can come from the cache.
            user: (_parent, args) => ({ __typename: 'User', id: args.id }),
          },
        },
      }),
      authExchange(async (utils) => ({
        addAuthToOperation(operation) {
          if (!tokens.accessToken) return operation;
          return utils.appendHeaders(operation, { Authorization: `Bearer ${tokens.accessToken}` });
        },
        willAuthError() {
          return Boolean(tokens.accessToken) && Date.now() >= tokens.expiresAt;
        },
        didAuthError(error, operation) {
          const refused = error.graphQLErrors.some((e) => e.extensions?.code === 'UNAUTHENTICATED');
          if (refused) refusedToken = operation.context.fetchOptions?.headers?.Authorization;
          return refused;
        },
        async refreshAuth() {
          const stale = refusedToken;
          refusedToken = undefined;
          if (stale && stale !== `Bearer ${tokens.accessToken}`) return;
          const result = await utils.mutate(REFRESH, { refreshToken: tokens.refreshToken });
          if (result.data?.refresh) {
            saveTokens(tokens, result.data.refresh);
            onRefresh(result.data.refresh);
          } else {
            // The session is over (INVALID_REFRESH_TOKEN): sign in again.
            tokens.accessToken = tokens.refreshToken = undefined;
          }
        },
      })),
      fetchExchange,
    ],
  });
}
