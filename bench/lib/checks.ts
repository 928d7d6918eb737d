/** Pass/fail lines of a run: what was expected, whether it held, and the evidence. Tests assert on the same list. */

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** A check on the service's memory, which means something only for the compiled service (see server.ts). */
  memory?: boolean;
}

export function check(name: string, ok: boolean, detail: string, opts: { memory?: boolean } = {}): Check {
  return { name, ok, detail, ...opts };
}

export function formatChecks(checks: readonly Check[]): string {
  return checks.map((c) => `  [${c.ok ? 'ok' : 'FAILED'}] ${c.name}: ${c.detail}`).join('\n');
}
