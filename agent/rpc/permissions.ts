/**
 * Permissions: the named groups of methods a grant gives. The names are
 * those of schemas/common.json (`permission`); each method schema declares
 * the one it needs in `x-permission`.
 */
import type { Permission } from '../../schemas/types.ts';

export type { Permission };

/** `admin` holds every other permission. */
export function grants(held: Permission, needed: Permission): boolean {
  return held === needed || held === 'admin';
}
