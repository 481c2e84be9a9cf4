/**
 * The authorization policy: grants of permissions on VFs to principals.
 * A call is allowed when some grant names its principal, a permission that
 * holds the method's, and (for a call on a VF) that VF. Everything else is
 * refused.
 */
import type { Grant } from '../../schemas/types.ts';
import { LOCAL_PRINCIPAL } from '../transport/peer.ts';
import type { VfNames } from './context.ts';
import { grants as holds, type Permission } from './permissions.ts';

/** With no `authorization` in the config: local callers may do everything, nobody else anything. */
export const DEFAULT_GRANTS: readonly Grant[] = [{ principal: LOCAL_PRINCIPAL, permissions: ['admin'] }];

interface CompiledGrant {
  readonly principal: RegExp;
  readonly permissions: readonly Permission[];
  /** Undefined: every VF. */
  readonly vfs: readonly RegExp[] | undefined;
}

export class Policy {
  private readonly grants: readonly CompiledGrant[];

  constructor(grants: readonly Grant[]) {
    this.grants = grants.map((g) => ({
      principal: globToRegExp(g.principal),
      permissions: g.permissions,
      vfs: g.vfs?.map(globToRegExp),
    }));
  }

  /**
   * Whether `principal` holds `permission` on `vf`: a VF's names, a reference
   * that names no VF (matched as given, so that an unknown name is refused
   * exactly like a known one the caller may not see), or undefined for a
   * call on no VF in particular (any grant of the permission will do).
   */
  allows(principal: string, permission: Permission, vf: VfNames | string | undefined): boolean {
    return this.grants.some((g) =>
      g.principal.test(principal)
      && g.permissions.some((held) => holds(held, permission))
      && (vf === undefined || g.vfs === undefined || g.vfs.some((pattern) => matchesVf(pattern, vf))));
  }
}

function matchesVf(pattern: RegExp, vf: VfNames | string): boolean {
  return typeof vf === 'string' ? pattern.test(vf) : pattern.test(vf.id) || pattern.test(vf.bdf);
}

/**
 * `*` any run of characters (slashes too: `spiffe://dc1/host/*` names every
 * host), `?` one character, everything else literal. Path-style glob
 * libraries stop `*` at `/`, which is wrong for SPIFFE IDs.
 */
export function globToRegExp(glob: string): RegExp {
  let source = '';
  for (const ch of glob) {
    if (ch === '*') source += '.*';
    else if (ch === '?') source += '.';
    else source += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`, 'su');
}
