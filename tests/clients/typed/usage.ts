// Compiled (never run) by test/schema.test.js next to the types that GraphQL Code
// Generator makes from schema.graphql and tests/operations/: what a TypeScript
// frontend writes against them. A contract change that breaks such code fails here.

import type {
  LogoutScope,
  MeQuery,
  RefreshMutation,
  RefreshMutationVariables,
  Role,
  SessionsQuery,
  SignupMutation,
  SignupMutationVariables,
  UpdateUserMutationVariables,
  UsersQuery,
  UsersQueryVariables,
} from './generated.js';
import type { Query, User } from './schema.js';

export const signupVariables: SignupMutationVariables = {
  input: { name: 'Ada Lovelace', username: 'ada', password: 'analytical engine' },
};

export function tokensOf(result: SignupMutation): { access: string; refresh: string | null } {
  // refreshToken is nullable: null in cookie mode.
  return { access: result.signup.accessToken, refresh: result.signup.refreshToken ?? null };
}

// Cookie mode: refresh with no argument.
export const cookieRefresh: RefreshMutationVariables = {};

export function expiresAt(result: RefreshMutation, now: number): number {
  return now + result.refresh.expiresIn * 1000;
}

export function isAdmin(result: MeQuery): boolean {
  const role: Role = result.me.role;
  return role === 'ADMIN';
}

export function usernames(page: UsersQuery): string[] {
  return page.users.edges.map((edge) => edge.node.username);
}

export function nextPage(page: UsersQuery): UsersQueryVariables | null {
  const { hasNextPage, endCursor } = page.users.pageInfo;
  return hasNextPage && endCursor ? { first: 20, after: endCursor } : null;
}

export function currentSession(result: SessionsQuery): string | undefined {
  return result.sessions.find((s) => s.current)?.id;
}

export const rename: UpdateUserMutationVariables = { id: 'some-id', input: { name: 'Ada King' } };
export const everywhere: LogoutScope = 'ALL';

// The schema's own types, for code that is not tied to one operation.
export function label(user: Pick<User, 'name' | 'username'>): string {
  return `${user.name} (@${user.username})`;
}
export type PublicUser = Query['user'];

// The compiler must refuse what the contract forbids.
// @ts-expect-error password is required
export const missingPassword: SignupMutationVariables = { input: { name: 'A', username: 'a' } };
// @ts-expect-error refreshToken may be null, so it is not a plain string
export const notNullable = (r: SignupMutation): string => r.signup.refreshToken;
// @ts-expect-error no such role
export const superuser: Role = 'ROOT';
