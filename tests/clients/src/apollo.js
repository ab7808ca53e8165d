import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { CombinedGraphQLErrors } from '@apollo/client/errors';
import { SetContextLink } from '@apollo/client/link/context';
import { ErrorLink } from '@apollo/client/link/error';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { relayStylePagination } from '@apollo/client/utilities';
import { from, switchMap } from 'rxjs';

const REFRESH = `mutation Refresh($refreshToken: String) {
  refresh(refreshToken: $refreshToken) { accessToken refreshToken }
}`;

/**
 * Apollo Client for authgraph. `tokens` holds { accessToken, refreshToken } and is
 * updated in place; keep it in memory (in cookie mode refreshToken stays null and the
 * browser sends the cookie: add `credentials: 'include'` to HttpLink and to the refresh
 * fetch when the API is on another origin). `persisted: true` sends SHA-256 hashes
 * instead of query text, and queries by hash over GET.
 */
export function createApolloClient({ url, tokens, persisted = false, fetch = globalThis.fetch, onRefresh = () => {} }) {
  // One refresh at a time: every request that fails while it runs waits for it.
  let refreshing = null;
  const refresh = () =>
    (refreshing ??= fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: REFRESH, variables: { refreshToken: tokens.refreshToken } }),
    })
      .then((res) => res.json())
      .then(({ data, errors }) => {
        if (!data) throw new Error(errors?.[0]?.message ?? 'refresh failed'); // sign in again
        Object.assign(tokens, data.refresh);
        onRefresh(data.refresh);
      })
      .finally(() => (refreshing = null)));

  const auth = new SetContextLink(({ headers }) => ({
    headers: tokens.accessToken ? { ...headers, authorization: `Bearer ${tokens.accessToken}` } : headers,
    sentToken: tokens.accessToken,
  }));

  // UNAUTHENTICATED is the one code to answer with a refresh; then the operation is
  // sent again, through `auth`, with the new token. If the token it was sent with is
  // no longer the current one, another request has refreshed already: just resend.
  const renew = new ErrorLink(({ error, operation, forward }) => {
    const expired =
      CombinedGraphQLErrors.is(error) && error.errors.some((e) => e.extensions?.code === 'UNAUTHENTICATED');
    const { retried, sentToken } = operation.getContext();
    if (expired && !retried) {
      operation.setContext({ retried: true });
      const renewed = sentToken === tokens.accessToken ? refresh() : Promise.resolve();
      return from(renewed).pipe(switchMap(() => forward(operation)));
    }
  });

  const hashes = new PersistedQueryLink({ sha256, useGETForHashedQueries: true });

  return new ApolloClient({
    link: ApolloLink.from([renew, auth, ...(persisted ? [hashes] : []), new HttpLink({ uri: url, fetch })]),
    cache: new InMemoryCache({
      // `users` is a Relay-style connection: fetchMore({ variables: { after } })
      // appends the next page to the cached list.
      typePolicies: { Query: { fields: { users: relayStylePagination() } } },
    }),
  });
}

async function sha256(text) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}
