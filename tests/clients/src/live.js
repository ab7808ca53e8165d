import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { subscriptionExchange } from '@urql/core';
import { createClient } from 'graphql-ws';

/**
 * The graphql-ws client for authgraph's subscriptions. `tokens` is the object the
 * Apollo or urql client keeps ({ accessToken, … }): every new socket sends the current
 * access token in connection_init. The server closes a socket with 4401 when its token
 * is bad or expires, and with 4403 when its session has ended; graphql-ws then ends the
 * socket's subscriptions with that close event as their error (see subscribeLive).
 */
export function createWsClient({ url, tokens, webSocketImpl, onClosed = () => {} }) {
  return createClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl, // Node 20 has no global WebSocket: pass `ws`'s.
    connectionParams: () => ({ Authorization: `Bearer ${tokens.accessToken}` }),
    // An ended session stays ended: no reconnect on 4403 (graphql-ws would retry it).
    shouldRetry: (event) => event?.code !== 4403,
    on: { closed: onClosed },
  });
}

/**
 * Subscribes through `wsClient`; when the access token expires (4401), `refresh()`
 * renews it (the function the Apollo link or urql exchange uses) and the subscription
 * starts again on a new socket. When the session ends (4403) the subscription errors:
 * sign in again. Returns the function that stops it.
 */
export function subscribeLive(wsClient, refresh, payload, sink) {
  let stopped = false;
  let unsubscribe = () => {};
  const start = () => {
    unsubscribe = wsClient.subscribe(payload, {
      next: (result) => sink.next(result),
      complete: () => sink.complete?.(),
      error: (error) => {
        if (error?.code === 4401 && !stopped) refresh().then(start, (e) => sink.error?.(e));
        else sink.error?.(error);
      },
    });
  };
  start();
  return () => {
    stopped = true;
    unsubscribe();
  };
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
