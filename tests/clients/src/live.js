import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { subscriptionExchange } from '@urql/core';
import { createClient } from 'graphql-ws';

/**
 * The graphql-ws client for authgraph's subscriptions. `tokens` is the object the
 * Apollo or urql client keeps ({ accessToken, … }); `refresh()` renews it (the same
 * function their auth link or exchange uses). Each (re)connection sends the current
 * access token in connection_init. The server closes with 4401 when the token is bad
 * or expired (refresh, then reconnect), and with 4403 when the session has ended
 * (sign in again: no retry).
 */
export function createWsClient({ url, tokens, refresh, webSocketImpl, onClosed = () => {} }) {
  let expired = false;
  return createClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl, // Node 20 has no global WebSocket: pass `ws`'s.
    connectionParams: async () => {
      if (expired) {
        await refresh();
        expired = false;
      }
      return { Authorization: `Bearer ${tokens.accessToken}` };
    },
    shouldRetry: (event) => event?.code === 4401 || event?.code === 1001,
    retryAttempts: 3,
    on: {
      closed: (event) => {
        if (event?.code === 4401) expired = true;
        onClosed(event);
      },
    },
  });
}

/** Apollo Client: send subscriptions over the socket (split it from the HTTP link). */
export const apolloSubscriptions = (wsClient) => new GraphQLWsLink(wsClient);

/** urql: the same socket under subscriptionExchange. */
export const urqlSubscriptions = (wsClient) =>
  subscriptionExchange({
    forwardSubscription(request) {
      const input = { ...request, query: request.query || '' };
      return { subscribe: (sink) => ({ unsubscribe: wsClient.subscribe(input, sink) }) };
    },
  });
