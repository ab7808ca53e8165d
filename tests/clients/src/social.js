// "Continue with …": sign in with another identity provider. The browser goes to the
// provider and comes back to your redirect URI with `code` and `state`; that page
// finishes the sign-in. `call(query, variables)` runs a mutation with your client:
// apolloCall(client) or urqlCall(client) below.

const START = `mutation StartSocialSignIn($provider: ID!, $redirectUri: String!) {
  startSocialSignIn(provider: $provider, redirectUri: $redirectUri) { authorizationUrl state }
}`;
const FINISH = `mutation FinishSocialSignIn($state: String!, $code: String!) {
  finishSocialSignIn(state: $state, code: $code) {
    accessToken refreshToken expiresIn mfaRequired assurance user { id username }
  }
}`;
const STATE_KEY = 'authgraph.providerState';

/** Apollo Client: `import { gql } from '@apollo/client'`, then apolloCall(client, gql). */
export const apolloCall = (client, gql) => async (query, variables) =>
  (await client.mutate({ mutation: gql(query), variables })).data;

/** urql: urqlCall(client). */
export const urqlCall = (client) => async (query, variables) => {
  const result = await client.mutation(query, variables).toPromise();
  if (result.error) throw result.error;
  return result.data;
};

/**
 * The button's handler: keeps the flow's state in this tab, then leaves for the
 * provider. `redirectUri` must be one of the server's OIDC_REDIRECT_URIS.
 */
export async function continueWith(call, provider, redirectUri) {
  const { startSocialSignIn } = await call(START, { provider, redirectUri });
  sessionStorage.setItem(STATE_KEY, startSocialSignIn.state);
  location.assign(startSocialSignIn.authorizationUrl);
}

/**
 * On the redirect URI's page: finishes only the flow this tab started. A redirect
 * whose state is not the one kept could carry an attacker's own code, which would sign
 * this browser into the attacker's account (login CSRF): it is refused here, before
 * the server is asked. Returns the AuthPayload (keep its tokens as after signin; with
 * `mfaRequired: true`, ask for the second factor next).
 */
export async function finishSignIn(call, url = new URL(location.href)) {
  const expected = sessionStorage.getItem(STATE_KEY);
  sessionStorage.removeItem(STATE_KEY);
  const params = url.searchParams;
  if (params.has('error')) {
    // The provider refused or the person cancelled: show it, call nothing.
    throw new Error(params.get('error_description') ?? params.get('error'));
  }
  const state = params.get('state');
  const code = params.get('code');
  if (!expected || state !== expected || !code) {
    throw new Error('This sign-in was not started in this tab: start it again.');
  }
  const { finishSocialSignIn } = await call(FINISH, { state, code });
  return finishSocialSignIn;
}
