// The page of the passkey test, bundled by esbuild: Apollo Client (src/apollo.js) and
// the documented passkey calls (src/passkeys.js), exposed to the test as `window.app`.

import { gql } from '@apollo/client';

import { createApolloClient } from '../../src/apollo.js';
import { registerPasskey, signInWithPasskey, verifyWithPasskey } from '../../src/passkeys.js';

const SIGNUP = gql`
  mutation Signup($input: SignupInput!) {
    signup(input: $input) { accessToken refreshToken }
  }
`;
const SIGNIN = gql`
  mutation Signin($input: SigninInput!) {
    signin(input: $input) { accessToken refreshToken mfaRequired assurance }
  }
`;
const REFRESH = gql`
  mutation Refresh($refreshToken: String) {
    refresh(refreshToken: $refreshToken) { accessToken refreshToken assurance }
  }
`;
const ME = gql`
  query Me {
    me { id username mfaEnabled passkeyCount }
  }
`;

const url = new URL(location.href).searchParams.get('api');
const tokens = { accessToken: null, refreshToken: null };
const client = createApolloClient({ url, tokens });
const run = async (mutation, variables) => (await client.mutate({ mutation, variables })).data;

window.app = {
  tokens,
  async signup(username, password) {
    Object.assign(tokens, (await run(SIGNUP, { input: { name: username, username, password } })).signup);
  },
  async signin(username, password) {
    const { signin } = await run(SIGNIN, { input: { username, password } });
    Object.assign(tokens, signin);
    return signin;
  },
  async refresh() {
    const { refresh } = await run(REFRESH, { refreshToken: tokens.refreshToken });
    Object.assign(tokens, refresh);
    return refresh;
  },
  async me() {
    return (await client.query({ query: ME, fetchPolicy: 'network-only' })).data.me;
  },
  async signOut() {
    Object.assign(tokens, { accessToken: null, refreshToken: null });
    await client.clearStore();
  },
  registerPasskey: (name) => registerPasskey(client, name),
  signInWithPasskey: (options) => signInWithPasskey(client, tokens, options),
  verifyWithPasskey: () => verifyWithPasskey(client, tokens),
};
