/**
 * The systemd units as operators get them (systemd/privatoon.service, systemd/privatoon@.service):
 *  - `systemd-analyze security --offline=yes`: an exposure of at most 1.5 for the service, 1.1 for the loopback-only
 *    template (the "Overall exposure level" line);
 *  - the drop-ins (systemd/drop-in/) keep the service at 1.5 or below;
 *  - `systemd-analyze verify`: no unknown or misspelt setting, in the units or the drop-ins;
 *  - the template is the service plus the differences its header names, so the two cannot drift apart;
 *  - systemd/privatoon.env.example loads, and names no variable config.ts does not read;
 *  - the unit's SystemCallFilter= and RestrictAddressFamilies= allow everything the server does: the real server,
 *    with the unit's Environment= lines, runs under strace through start, a real inference, errors, a key reload and
 *    a stop, and every call it makes must pass the filter (under systemd one that does not would fail with EPERM);
 *  - the service runs in a systemd-like sandbox: an unprivileged uid, no capabilities, no new privileges, the whole
 *    file system read-only, a private /tmp, no home folders, no core dumps, the key file owned by the service alone
 *    (as LoadCredential= hands it over); it starts without ALLOW_ROOT, serves, reloads its keys and stops cleanly.
 *
 * PID 1 is not systemd where these tests run (containers: `systemctl is-system-running` says "offline"), so the
 * unit itself is not started here; the offline analysis, the traced run and the sandbox are the checks. Each part
 * skips, with a message, without its tool: systemd-analyze (Debian package `systemd`), strace, unshare and setpriv
 * (`util-linux`, and root).
 */
import { spawnSync } from 'node:child_process';
import { chownSync, chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { loadConfig } from '../../config.js';
import { newApiKey } from '../../keys.js';
import { ROOT, fixtures, form, encodeForm, magic, sharedImage, sleep } from '../helper.js';
import { request, startInstance, startRedis, tempDir, waitFor, which, type Instance } from './tools.js';
import { startScript } from '../../bench/lib/server.js';

const SERVICE = join(ROOT, 'systemd', 'privatoon.service');
const TEMPLATE = join(ROOT, 'systemd', 'privatoon@.service');
const DROP_INS = join(ROOT, 'systemd', 'drop-in');

interface Setting {
  section: string;
  key: string;
  value: string;
}

/** The settings of a unit file, in order; comments and blank lines dropped. */
function settings(text: string): Setting[] {
  const out: Setting[] = [];
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header !== null) {
      section = header[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    out.push({ section, key: line.slice(0, eq), value: line.slice(eq + 1) });
  }
  return out;
}

const service = settings(readFileSync(SERVICE, 'utf8'));
const template = settings(readFileSync(TEMPLATE, 'utf8'));
const values = (unit: Setting[], key: string) => unit.filter((s) => s.key === key).map((s) => s.value);

/** The unit's Environment= assignments that a test can reproduce (not the credential path, %d). */
function unitEnvironment(unit: Setting[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const value of values(unit, 'Environment')) {
    const eq = value.indexOf('=');
    if (!value.includes('%')) env[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return env;
}

const systemdAnalyze = which('systemd-analyze');
const noAnalyze = systemdAnalyze === null ? 'systemd-analyze is not installed (Debian package systemd)' : false;

t.test('the template is the service, differing only where its header says', async (t) => {
  const strip = (unit: Setting[], keys: readonly string[]) => unit.filter((s) => !keys.includes(s.key)).map((s) => `${s.section}.${s.key}=${s.value}`);
  t.same(strip(template, ['Description', 'ExecStart', 'IPAddressDeny', 'IPAddressAllow']), strip(service, ['Description', 'ExecStart']), 'every other setting is the same, in the same order');
  t.same(values(template, 'ExecStart'), values(service, 'ExecStart').map((v) => `/usr/bin/env PORT=%i METRICS_PORT=1%i ${v}`), 'the port comes from the instance name');
  t.same(values(template, 'IPAddressDeny'), ['any']);
  t.same(values(template, 'IPAddressAllow'), ['localhost'], 'and the instance talks to this box only');
  t.same(values(service, 'ExecReload'), ['/bin/kill -HUP $MAINPID'], 'reload: SIGHUP, which re-reads the key file');
  t.same(values(service, 'UMask'), ['0077']);
  t.same(values(service, 'LimitCORE'), ['0'], 'no core dumps');
  t.same(values(service, 'CapabilityBoundingSet'), [''], 'no capabilities');
  t.same(values(service, 'ReadWritePaths'), [], 'no writable path');
  t.same(values(service, 'ReadOnlyPaths'), ['/tmp /var/tmp'], 'not even the private /tmp and /var/tmp');
  t.same(values(service, 'PrivateTmp'), ['yes'], 'which stay private (the exposure score counts it)');
  const stopSeconds = Number(/^(\d+)s$/.exec(values(service, 'TimeoutStopSec')[0] ?? '')?.[1]);
  t.ok(stopSeconds * 1000 > 10_000, `TimeoutStopSec (${stopSeconds} s) outlasts SHUTDOWN_TIMEOUT_MS (10 s)`);
  t.ok(values(service, 'Environment').includes('API_KEYS_FILE=%d/api-keys') && values(service, 'LoadCredential').includes('api-keys:/etc/privatoon/api-keys.txt'), 'keys as a credential');
  // The same allocator setting as `npm start` (package.json): freed memory scrubbed (test/privacy/memory-residue.test.ts).
  const { env: startEnv, nodeArgs } = startScript();
  const tunables = startEnv['GLIBC_TUNABLES'];
  t.ok(tunables?.includes('glibc.malloc.perturb='), 'npm start scrubs freed memory');
  t.ok(values(service, 'Environment').includes(`GLIBC_TUNABLES=${tunables}`), 'and so does the unit');
  // And node's flags as `npm start` gives them: the main thread's heap floor (pool/worker-heap.ts).
  t.ok(nodeArgs.length > 0, `npm start gives node ${nodeArgs.join(' ')}`);
  t.same(values(service, 'ExecStart'), [['/usr/bin/node', ...nodeArgs, '/opt/privatoon/dist/server.js'].join(' ')], 'and so does the unit');
  const memoryMax = /^(\d+)([MG])$/.exec(values(service, 'MemoryMax')[0] ?? '');
  t.ok(memoryMax !== null, `MemoryMax is set (${values(service, 'MemoryMax')[0]})`);
});

t.test('the example environment file is a valid configuration, with no variable config.ts does not know', async (t) => {
  const example = readFileSync(join(ROOT, 'systemd', 'privatoon.env.example'), 'utf8');
  const env: Record<string, string> = {};
  for (const line of example.split('\n')) {
    const match = /^#?([A-Z][A-Z0-9_]+)=(.*)$/.exec(line);
    if (match !== null) env[match[1]!] = match[2]!;
  }
  t.ok(Object.keys(env).length >= 10, `${Object.keys(env).length} variables`);
  const known = readFileSync(join(ROOT, 'config.ts'), 'utf8');
  t.same(Object.keys(env).filter((name) => !known.includes(`'${name}'`)), [], 'every one is read by config.ts');
  t.doesNotThrow(() => loadConfig(env), 'all of them together load');
});

function exposure(file: string): number {
  const run = spawnSync(systemdAnalyze!, ['security', '--offline=yes', '--no-pager', file], { encoding: 'utf8' });
  const match = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(run.stdout + run.stderr);
  if (match === null) throw new Error(`no "Overall exposure level" line from systemd-analyze:\n${run.stdout}\n${run.stderr}`);
  return Number(match[1]);
}

t.test('systemd-analyze security: exposure', { skip: noAnalyze }, async (t) => {
  const dir = tempDir(t, 'units');
  // Copies in a folder of their own: systemd would merge a privatoon.service.d/ found beside a unit file.
  const single = join(dir, 'privatoon.service');
  const instance = join(dir, 'privatoon@8081.service');
  writeFileSync(single, readFileSync(SERVICE));
  writeFileSync(instance, readFileSync(TEMPLATE));
  const serviceLevel = exposure(single);
  const templateLevel = exposure(instance);
  t.comment(`exposure: privatoon.service ${serviceLevel}, privatoon@8081.service ${templateLevel}`);
  t.ok(serviceLevel <= 1.5, `privatoon.service: ${serviceLevel} <= 1.5`);
  t.ok(templateLevel <= 1.1, `privatoon@8081.service (loopback only): ${templateLevel} <= 1.1`);
});

/** The service with a drop-in applied, as one file (what systemd merges), for the offline tools. */
function withDropIn(dir: string, dropIn: string): string {
  const file = join(dir, `privatoon-${dropIn.replace(/\.conf$/, '')}.service`);
  writeFileSync(file, readFileSync(SERVICE, 'utf8') + '\n' + readFileSync(join(DROP_INS, dropIn), 'utf8'));
  return file;
}

t.test('systemd-analyze security: each drop-in keeps the service at 1.5 or below', { skip: noAnalyze }, async (t) => {
  const dir = tempDir(t, 'drop-ins');
  for (const dropIn of readdirSync(DROP_INS)) {
    const level = exposure(withDropIn(dir, dropIn));
    t.ok(level <= 1.5, `privatoon.service + ${dropIn}: ${level} <= 1.5`);
  }
});

t.test('systemd-analyze verify: no unknown or misspelt setting', { skip: noAnalyze }, async (t) => {
  const dir = tempDir(t, 'verify');
  const files = [join(dir, 'privatoon.service'), join(dir, 'privatoon@8081.service'), ...readdirSync(DROP_INS).map((d) => withDropIn(dir, d))];
  writeFileSync(files[0]!, readFileSync(SERVICE));
  writeFileSync(files[1]!, readFileSync(TEMPLATE));
  for (const file of files) {
    const run = spawnSync(systemdAnalyze!, ['verify', file], { encoding: 'utf8' });
    const complaints = (run.stdout + run.stderr)
      .split('\n')
      .filter((l) => l.includes('privatoon'))
      // Names newer than this libseccomp (e.g. riscv_hwprobe in @system-service), and ExecStart's binary, which
      // lives in /opt/privatoon on a real install.
      .filter((l) => !/Failed to parse system call|is not executable/.test(l));
    t.same(complaints, [], `${file.slice(dir.length + 1)}: nothing to say`);
  }
});

/** Every system call in a @group, nested groups expanded (systemd-analyze syscall-filter). */
const groups = new Map<string, Set<string>>();
function expand(name: string): Set<string> {
  if (!name.startsWith('@')) return new Set([name]);
  const known = groups.get(name);
  if (known !== undefined) return known;
  const listing = spawnSync(systemdAnalyze!, ['syscall-filter', name], { encoding: 'utf8' }).stdout;
  const names = new Set<string>();
  for (const line of listing.split('\n').slice(1)) {
    const item = line.trim();
    if (item === '' || item.startsWith('#')) continue;
    for (const call of expand(item)) names.add(call);
  }
  groups.set(name, names);
  return names;
}

/** What the unit's SystemCallFilter= lines allow: the first is an allow list, `~` lines take away, others add. */
function allowedCalls(unit: Setting[]): Set<string> {
  let allowed: Set<string> | null = null;
  for (const value of values(unit, 'SystemCallFilter')) {
    const deny = value.startsWith('~');
    const names = new Set((deny ? value.slice(1) : value).trim().split(/\s+/).flatMap((item) => [...expand(item)]));
    if (allowed === null) {
      if (deny) throw new Error('the first SystemCallFilter= line is expected to be an allow list');
      allowed = names;
    } else {
      for (const name of names) {
        if (deny) allowed.delete(name);
        else allowed.add(name);
      }
    }
  }
  if (allowed === null) throw new Error('no SystemCallFilter= in the unit');
  return allowed;
}

const images = await fixtures();
const photo = sharedImage('astronaut_eileen_collins.png');
const photoBytes = photo !== null ? readFileSync(photo) : images.jpeg;

/** What a deployed instance goes through: a real inference, refusals, cheap routes, a key reload, a stop. */
async function exercise(t: Test, server: Instance, key: string): Promise<void> {
  const { payload, contentType } = await encodeForm(form(photoBytes, { type: photo !== null ? 'image/png' : 'image/jpeg', filename: 'p.png' }));
  const result = await request(`${server.base}/api/cartoonize`, { body: payload, headers: { 'content-type': contentType, 'x-api-key': key } });
  t.equal(result.status, 200, 'a real inference');
  t.equal(magic(result.body), 'jpeg');
  const bad = await request(`${server.base}/api/cartoonize`, { body: images.text, headers: { 'content-type': 'image/jpeg', 'x-api-key': key } });
  t.equal(bad.status, 415, 'bad input: a clear 4xx');
  t.equal((await request(`${server.base}/api/styles`)).status, 200);
  t.equal((await request(`${server.base}/healthz`)).status, 200);
  t.equal((await request(`${server.base}/nope`)).status, 404);
  t.match((await request(`${server.metrics}/metrics`)).body.toString(), /privatoon_rate_limit_store_errors_total 0/);
  process.kill(server.pid, 'SIGHUP');
  await waitFor('the key reload', () => server.output().includes('"msg":"API keys reloaded"'));
  process.kill(server.pid, 'SIGTERM');
  t.equal(await server.exited, 0, 'a clean stop');
}

const strace = which('strace');

t.test('the unit\'s system-call filter and address families allow everything the server does', { skip: noAnalyze || (strace === null ? 'strace is not installed' : false) }, async (t) => {
  const dir = tempDir(t, 'syscalls');
  const allowed = allowedCalls(service);
  const families = values(service, 'RestrictAddressFamilies').flatMap((v) => v.split(/\s+/));
  const key = newApiKey('ops');
  writeFileSync(join(dir, 'keys.txt'), key.line + '\n');
  const redis = which('redis-server') !== null ? await startRedis(t, dir) : null;
  if (redis === null) t.comment('redis-server is not installed: the Redis client is not traced');
  const trace = join(dir, 'trace.txt');
  const server = await startInstance(
    t,
    { ...unitEnvironment(service), API_KEYS_FILE: join(dir, 'keys.txt'), ...(redis !== null ? { REDIS_URL: redis.url } : {}) },
    [strace!, '-f', '-qq', '-o', trace],
  );
  await exercise(t, server, key.key);
  await server.exited;

  const lines = readFileSync(trace, 'utf8').split('\n');
  // tsx compiles TypeScript in an esbuild child process; the service as installed runs dist/*.js without it.
  const esbuild = new Set(lines.flatMap((l) => /^(\d+)\s+execve\("[^"]*esbuild"/.exec(l)?.[1] ?? []));
  const used = new Map<string, string>();
  const socketFamilies = new Set<string>();
  for (const line of lines) {
    const match = /^(\d+)\s+(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)/.exec(line);
    if (match === null || esbuild.has(match[1]!)) continue;
    if (!used.has(match[2]!)) used.set(match[2]!, line.slice(0, 200));
    const family = /\ssocket\((AF_[A-Z0-9]+)/.exec(line)?.[1];
    if (family !== undefined) socketFamilies.add(family);
  }
  t.ok(used.size > 50, `${used.size} different calls traced`);
  const refused = [...used].filter(([call]) => !allowed.has(call));
  t.same(refused.map(([, line]) => line), [], 'every call passes SystemCallFilter=');
  t.same([...socketFamilies].filter((f) => !families.includes(f)), [], `socket families ${[...socketFamilies].join(', ')} pass RestrictAddressFamilies=`);
});

const canSandbox =
  process.getuid?.() !== 0
    ? 'needs root (unshare, setpriv)'
    : which('unshare') === null || which('setpriv') === null
      ? 'unshare or setpriv is not installed (util-linux)'
      : spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status !== 0
        ? 'this machine does not allow mount namespaces'
        : spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'test', '-r', join(ROOT, 'server.ts')]).status !== 0
          ? 'the checkout is not readable by an unprivileged user'
          : false;

/**
 * In a private mount namespace: every mount read-only (ProtectSystem=strict, no ReadWritePaths), a fresh read-only /tmp
 * (PrivateTmp with ReadOnlyPaths=/tmp, unless the checkout lives there), empty /home and /root (ProtectHome, unless the checkout lives there), no core dumps, umask 077; then
 * uid/gid 65534 with no capabilities and no new privileges (DynamicUser, CapabilityBoundingSet=, NoNewPrivileges).
 */
const SANDBOX = `set -e
awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r m; do
  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
case "$ROOT/" in /tmp/*) ;; *) mount -t tmpfs -o ro,mode=1777,size=16m,nosuid,nodev tmpfs /tmp ;; esac
for home in /home /root; do
  case "$ROOT/" in "$home"/*) ;; *) if [ -d "$home" ]; then mount -t tmpfs -o mode=000,size=1m tmpfs "$home"; fi ;; esac
done
if touch "$ROOT/.sandbox-probe" 2>/dev/null; then rm -f "$ROOT/.sandbox-probe"; echo "sandbox: still writable" >&2; exit 3; fi
ulimit -c 0
umask 0077
exec setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs --bounding-set=-all --inh-caps=-all -- "$@"`;

t.test('the service runs in a systemd-like sandbox: unprivileged, read-only, no capabilities', { skip: canSandbox }, async (t) => {
  const dir = t.testdir({});
  const key = newApiKey('ops');
  // As LoadCredential= hands it over: readable by the service's user alone.
  const keys = join(dir, 'api-keys');
  writeFileSync(keys, key.line + '\n');
  chownSync(keys, 65534, 65534);
  chmodSync(keys, 0o400);
  const redis = which('redis-server') !== null ? await startRedis(t, tempDir(t, 'sandbox-redis')) : null;
  const server = await startInstance(
    t,
    {
      ...unitEnvironment(service),
      ALLOW_ROOT: '', // not needed: the point of the test
      HOME: '/', // DynamicUser's
      ROOT,
      API_KEYS_FILE: keys,
      ...(redis !== null ? { REDIS_URL: redis.url } : {}),
    },
    ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', SANDBOX, 'sandbox'],
  );
  const status = readFileSync(`/proc/${server.pid}/status`, 'utf8');
  t.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m, 'runs as an unprivileged user');
  t.match(status, /^CapEff:\s+0+$/m, 'with no effective capabilities');
  t.match(status, /^CapBnd:\s+0+$/m, 'and none to gain');
  t.match(status, /^NoNewPrivs:\s+1$/m, 'no new privileges');
  const limits = readFileSync(`/proc/${server.pid}/limits`, 'utf8');
  t.match(limits, /^Max core file size\s+0\s+/m, 'no core dumps');
  if (redis !== null) {
    await waitFor('the Redis connection', () => /rate-limit store reachable/.test(server.output()));
  }
  await exercise(t, server, key.key);
  t.notMatch(server.output(), /EROFS|EACCES|read-only file system/i, 'it never tried to write anywhere');
  await sleep(0);
});
