/** Pass/fail lines of a run: what was expected, whether it held, and the evidence. Tests assert on the same list. */

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export function check(name: string, ok: boolean, detail: string): Check {
  return { name, ok, detail };
}

export function formatChecks(checks: readonly Check[]): string {
  return checks.map((c) => `  [${c.ok ? 'ok' : 'FAILED'}] ${c.name}: ${c.detail}`).join('\n');
}
