import { gql } from '@apollo/client';

const START_REGISTRATION = gql`
  mutation StartPasskeyRegistration {
    startPasskeyRegistration { challengeId optionsJson }
  }
`;
const FINISH_REGISTRATION = gql`
  mutation FinishPasskeyRegistration($challengeId: ID!, $credentialJson: String!, $name: String) {
    finishPasskeyRegistration(challengeId: $challengeId, credentialJson: $credentialJson, name: $name) { id name }
  }
`;
const START_SIGN_IN = gql`
  mutation StartPasskeySignIn {
    startPasskeySignIn { challengeId optionsJson }
  }
`;
const FINISH_SIGN_IN = gql`
  mutation FinishPasskeySignIn($challengeId: ID!, $credentialJson: String!) {
    finishPasskeySignIn(challengeId: $challengeId, credentialJson: $credentialJson) {
      accessToken refreshToken assurance user { id username }
    }
  }
`;
const START_VERIFICATION = gql`
  mutation StartPasskeyVerification {
    startPasskeyVerification { challengeId optionsJson }
  }
`;
const VERIFY_PASSKEY = gql`
  mutation VerifyPasskey($challengeId: ID!, $credentialJson: String!) {
    verifyPasskey(challengeId: $challengeId, credentialJson: $credentialJson) { accessToken refreshToken assurance }
  }
`;

/**
 * Registers a passkey of this device for the signed-in account (`client` as
 * createApolloClient makes it). The account's first second factor raises this session
 * to AAL2: refresh for tokens that say so, then regenerateRecoveryCodes for the codes
 * that recover a lost passkey.
 */
export async function registerPasskey(client, name) {
  const { data } = await client.mutate({ mutation: START_REGISTRATION });
  const { challengeId, optionsJson } = data.startPasskeyRegistration;
  const credential = await navigator.credentials.create({
    publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(JSON.parse(optionsJson)),
  });
  const credentialJson = JSON.stringify(credential.toJSON());
  const res = await client.mutate({ mutation: FINISH_REGISTRATION, variables: { challengeId, credentialJson, name } });
  return res.data.finishPasskeyRegistration;
}

/**
 * Signs in with a passkey, no username typed: the session is AAL2 at once. With
 * `conditional: true` (the autofill), call it as the sign-in page loads, with
 * `<input name="username" autocomplete="username webauthn">` on the page: the browser
 * offers the passkeys among that field's suggestions, and the promise settles when one
 * is picked (abort it through `signal` if the user signs in with a password instead).
 */
export async function signInWithPasskey(client, tokens, { conditional = false, signal } = {}) {
  const { data } = await client.mutate({ mutation: START_SIGN_IN });
  const { challengeId, optionsJson } = data.startPasskeySignIn;
  const credential = await navigator.credentials.get({
    mediation: conditional ? 'conditional' : 'optional',
    signal,
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(JSON.parse(optionsJson)),
  });
  const credentialJson = JSON.stringify(credential.toJSON());
  const res = await client.mutate({ mutation: FINISH_SIGN_IN, variables: { challengeId, credentialJson } });
  Object.assign(tokens, res.data.finishPasskeySignIn);
  return res.data.finishPasskeySignIn;
}

/**
 * The second factor of a password sign-in that answered `mfaRequired: true`: one of the
 * account's passkeys raises the session to AAL2 and brings new tokens (the session's
 * earlier refresh token no longer works).
 */
export async function verifyWithPasskey(client, tokens) {
  const { data } = await client.mutate({ mutation: START_VERIFICATION });
  const { challengeId, optionsJson } = data.startPasskeyVerification;
  const credential = await navigator.credentials.get({
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(JSON.parse(optionsJson)),
  });
  const credentialJson = JSON.stringify(credential.toJSON());
  const res = await client.mutate({ mutation: VERIFY_PASSKEY, variables: { challengeId, credentialJson } });
  Object.assign(tokens, res.data.verifyPasskey);
  return res.data.verifyPasskey;
}
