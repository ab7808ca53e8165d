// The page of the social sign-in test, bundled by esbuild: Apollo Client
// (src/apollo.js), urql (src/urql.js) and the documented calls (src/social.js),
// exposed to the test as `window.app`. The page at /auth/callback finishes the flow
// as it loads, with the client the tab started it with.

import { gql } from '@apollo/client';

import { createApolloClient } from '../../src/apollo.js';
import { apolloCall, continueWith, finishSignIn, urqlCall } from '../../src/social.js';
import { createUrqlClient, saveTokens } from '../../src/urql.js';

const ME = `query Me { me { id username hasPassword } }`;

const url = window.API;
const tokens = { accessToken: null, refreshToken: null };
const apollo = createApolloClient({ url, tokens });
const urql = createUrqlClient({ url, tokens });
const calls = { apollo: apolloCall(apollo, gql), urql: urqlCall(urql) };

window.app = {
  tokens,
  continueWith(clientName, provider) {
    sessionStorage.setItem('client', clientName);
    return continueWith(calls[clientName], provider, `${location.origin}/auth/callback`);
  },
  async me() {
    if (sessionStorage.getItem('client') === 'urql') {
      const result = await urql.query(ME, {}, { requestPolicy: 'network-only' }).toPromise();
      return result.data.me;
    }
    return (await apollo.query({ query: gql(ME), fetchPolicy: 'network-only' })).data.me;
  },
};

if (location.pathname === '/auth/callback') {
  const clientName = sessionStorage.getItem('client');
  window.finished = finishSignIn(calls[clientName]).then(
    (payload) => {
      if (clientName === 'urql') saveTokens(tokens, payload);
      else Object.assign(tokens, payload);
      return { username: payload.user.username, assurance: payload.assurance, mfaRequired: payload.mfaRequired };
    },
    (err) => ({ error: err.message }),
  );
}
