import { gql } from '@apollo/client';
import { CombinedGraphQLErrors } from '@apollo/client/errors';

const SIGNIN = gql`
  mutation Signin($input: SigninInput!) {
    signin(input: $input) { accessToken refreshToken mfaRequired assurance }
  }
`;
const VERIFY_MFA = gql`
  mutation VerifyMfa($code: String!) {
    verifyMfa(code: $code) { accessToken refreshToken assurance recoveryCodesLeft }
  }
`;

/**
 * Signs in with Apollo Client (`client` and `tokens` as createApolloClient takes them),
 * then, if the account has a second factor, asks `askForCode()` for the authenticator's
 * 6-digit code or a recovery code until one is right. Until then the session is AAL1:
 * only me, sessions, logout and verifyMfa answer it; everything else is MFA_REQUIRED.
 */
export async function signIn(client, tokens, input, askForCode) {
  const { data } = await client.mutate({ mutation: SIGNIN, variables: { input } });
  Object.assign(tokens, data.signin);
  if (!data.signin.mfaRequired) return data.signin;
  for (;;) {
    try {
      const res = await client.mutate({ mutation: VERIFY_MFA, variables: { code: await askForCode() } });
      // AAL2 tokens; the session's earlier refresh token no longer works.
      Object.assign(tokens, res.data.verifyMfa);
      return res.data.verifyMfa;
    } catch (error) {
      // A wrong or spent code: ask again. RATE_LIMITED (too many wrong codes) and the rest end it.
      const code = CombinedGraphQLErrors.is(error) ? error.errors[0]?.extensions?.code : undefined;
      if (code !== 'INVALID_MFA_CODE') throw error;
    }
  }
}
