/**
 * The OCI image (deploy/image): built by deploy/image/build.sh as an operator would build it, then proved from what
 * was built:
 *  - the image's configuration: the fixed non-root USER, the entrypoint (node, no shell), no /tmp;
 *  - its file list: node, the shared libraries, /app (compiled code, web page, built-in models, production
 *    node_modules) and empty mount points, nothing else: no shell, no npm, no compiler, no package manager, no tests,
 *    no sources, no other platforms' binaries; every file owned by root and writable by nobody else;
 *  - the service started from that root file system (a private mount namespace, the root read-only, chroot, the
 *    image's UID:GID, no capabilities, no new privileges: deploy/image/run-rootfs.sh) answers /readyz and /healthz,
 *    cartoonizes a photo with a key from the read-only keys folder, and stops cleanly on SIGTERM.
 * With podman the image itself is checked (its OCI archive is unpacked and run); without it, the root file system
 * the script assembles, and the image checks skip with a message. Needs root (mounts, chroot), unshare, setpriv
 * and npm (production dependencies, from the lockfile and npm's cache or registry).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { newApiKey } from '../../keys.js';
import { ROOT, fixtures, freePort, magic } from '../helper.js';
import { tempDir, waitFor, which } from './tools.js';
import { startScript } from '../../bench/lib/server.js';

const IMAGE = join(ROOT, 'deploy', 'image');
const containerfile = readFileSync(join(IMAGE, 'Containerfile'), 'utf8');
const user = /^USER (\d+):(\d+)$/m.exec(containerfile);
const podman = which('podman');

const cannot =
  process.getuid?.() !== 0
    ? 'needs root (mounts, chroot, files owned by root)'
    : which('unshare') === null || which('setpriv') === null || which('chroot') === null
      ? 'unshare, setpriv or chroot is not installed (util-linux, coreutils)'
      : spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status !== 0
        ? 'this machine does not allow mount namespaces'
        : false;

interface Entry {
  path: string;
  mode: string;
  uid: number;
  gid: number;
}

/** `tar -tv --numeric-owner` lines: mode uid/gid size date time path [-> target]. */
function parseTarListing(text: string): Entry[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const m = /^(\S{10}) (\d+)\/(\d+)\s+\d+ \S+ \S+ (.+?)(?: -> .*)?$/.exec(line);
      if (m === null) throw new Error(`unexpected tar line: ${line}`);
      return { mode: m[1]!, uid: Number(m[2]), gid: Number(m[3]), path: m[4]!.replace(/^\.?\//, '').replace(/\/$/, '') };
    })
    .filter((e) => e.path !== '' && e.path !== '.');
}

function run(command: string, args: string[], opts: { cwd?: string } = {}): string {
  const out = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, ...opts });
  if (out.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${out.status}):\n${out.stderr}`);
  return out.stdout;
}

// Building the image (production dependencies, podman) takes a minute or two on a busy machine: above tap's default.
t.setTimeout(600_000);

t.test('the OCI image: what is inside, and the service run from it', { skip: cannot }, async (t) => {
  t.ok(user, 'the Containerfile names a numeric USER uid:gid');
  const [uid, gid] = [Number(user![1]), Number(user![2])];
  t.not(uid, 0);
  const out = tempDir(t, 'image');
  const tag = `localhost/privatoon:test-${process.pid}`;
  if (podman !== null) t.teardown(() => void spawnSync(podman, ['rmi', '--force', tag]));
  // dist/ is built already (npm ci builds it); the test must not rebuild the checkout under other tests' feet.
  const built = spawnSync(join(IMAGE, 'build.sh'), ['--no-build', '--out', out, '--tag', tag], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  t.equal(built.status, 0, 'deploy/image/build.sh succeeds');
  if (built.status !== 0) {
    t.comment(built.stderr);
    return;
  }
  t.comment(built.stdout.trim());

  let rootfs = join(out, 'rootfs');
  let entries: Entry[];
  let env: Record<string, string>;
  let entrypoint: string[];
  if (podman === null) {
    t.test('the image configuration', { skip: 'podman is not installed (Debian package podman): no image built; the assembled root file system is checked instead' }, async () => {});
    entries = parseTarListing(run('sh', ['-c', 'tar -C "$1" -cf - . | tar --numeric-owner -tvf -', 'list', rootfs]));
    env = Object.fromEntries([...containerfile.matchAll(/^\s*(?:ENV\s+)?([A-Z_]+)=(\S+?)\s*\\?$/gm)].map((m) => [m[1]!, m[2]!]));
    entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(containerfile)![1]!) as string[];
    t.test('the entrypoint', async (t) => {
      t.same(entrypoint, ['/usr/local/bin/node', ...startScript().nodeArgs, '/app/dist/server.js'], 'node itself with the flags of `npm start`, no shell in between');
    });
  } else {
    t.test('the image configuration', async (t) => {
      const [inspect] = JSON.parse(run(podman, ['image', 'inspect', tag])) as { Config: Record<string, unknown>; RootFS: { Layers: string[] } }[];
      const config = inspect!.Config;
      t.equal(config.User, `${uid}:${gid}`, 'runs as the fixed non-root UID:GID');
      t.same(config.Entrypoint, ['/usr/local/bin/node', ...startScript().nodeArgs, '/app/dist/server.js'], 'node itself with the flags of `npm start`, no shell in between');
      t.notOk(config.Cmd, 'no command a shell would run');
      t.equal(inspect!.RootFS.Layers.length, 3, 'three layers: runtime, dependencies, application');
    });
    // Unpack the saved OCI archive layer by layer: what a node would pull, not the build folder.
    const layout = join(out, 'oci');
    mkdirSync(layout);
    run('tar', ['-xf', join(out, 'privatoon.oci.tar'), '-C', layout]);
    const blob = (digest: string) => join(layout, 'blobs', ...digest.split(':'));
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const manifest = JSON.parse(readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as { config: { digest: string }; layers: { digest: string; mediaType: string }[] };
    const imageConfig = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8')) as { config: { Env: string[]; Entrypoint: string[] } };
    env = Object.fromEntries(imageConfig.config.Env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
    entrypoint = imageConfig.config.Entrypoint;
    rootfs = join(out, 'unpacked');
    mkdirSync(rootfs);
    entries = [];
    for (const layer of manifest.layers) {
      entries.push(...parseTarListing(run('tar', ['--numeric-owner', '-tvf', blob(layer.digest)])));
      run('tar', ['--numeric-owner', '-xpf', blob(layer.digest), '-C', rootfs]);
    }
  }

  t.test('the allocator settings', async (t) => {
    t.equal(env['GLIBC_TUNABLES'], startScript().env['GLIBC_TUNABLES'], 'those of `npm start`: freed memory scrubbed, and kept for the next request');
  });

  t.test('the file list', async (t) => {
    const paths = new Set(entries.map((e) => e.path));
    const top = [...new Set(entries.map((e) => e.path.split('/')[0]))].sort();
    t.same(top, ['app', 'dev', 'etc', 'lib', 'lib64', 'proc', 'sys', 'usr'], `top level: ${top.join(' ')} (no tmp, no bin, no var)`);
    for (const [path, what] of [
      ['usr/local/bin/node', 'node'],
      ['lib64/ld-linux-x86-64.so.2', 'the dynamic loader'],
      ['lib/x86_64-linux-gnu/libc.so.6', 'glibc'],
      ['lib/x86_64-linux-gnu/libstdc++.so.6', 'libstdc++ (onnxruntime, sharp)'],
      ['app/dist/server.js', 'the compiled server'],
      ['app/package.json', 'package.json (ESM)'],
      ['app/web/index.html', 'the web page'],
      ['app/models/builtin/toon.onnx', 'the built-in model'],
      ['app/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1', 'onnxruntime for linux x64'],
      ['app/node_modules/@img/sharp-linux-x64/package.json', 'sharp for linux x64'],
      ['app/node_modules/@img/sharp-libvips-linux-x64/package.json', "and sharp's libvips"],
      ['etc/privatoon', 'the mount point for the keys'],
    ] as const) {
      t.ok(paths.has(path), `${what}: /${path}`);
    }
    const executables = entries.filter((e) => e.mode.startsWith('-') && /x/.test(e.mode) && !e.path.startsWith('app/node_modules/') && !e.path.startsWith('lib'));
    t.same(executables.map((e) => e.path), ['usr/local/bin/node'], 'the only program outside libraries is node');
    const forbidden = entries.filter((e) => /(^|\/)(sh|bash|dash|ash|busybox|npm|npx|corepack|gcc|g\+\+|cc|make|apt|apt-get|dpkg|tsc|tsx)$/.test(e.path) || /^app\/node_modules\/(npm|typescript|tsx|tap|@tapjs|esbuild|playwright-core|onnx-proto|protobufjs|kubernetes-models)(\/|$)/.test(e.path));
    t.same(forbidden.map((e) => e.path), [], 'no shell, package manager, compiler or development dependency');
    t.same(entries.filter((e) => /^app\/dist\/(test|bench|models\/generate)\//.test(e.path) || /\.(ts|map)$/.test(e.path) && e.path.startsWith('app/dist/')).map((e) => e.path), [], 'no tests, benchmarks, generators, sources or maps');
    t.same(entries.filter((e) => /onnxruntime-node\/bin\/napi-v6\/(darwin|win32|linux\/arm64)/.test(e.path)).map((e) => e.path), [], "no other platforms' binaries");
    t.same(entries.filter((e) => e.uid !== 0 || e.gid !== 0).map((e) => e.path), [], 'everything belongs to root');
    t.same(entries.filter((e) => !e.mode.startsWith('l') && (e.mode[5] === 'w' || e.mode[8] === 'w')).map((e) => e.path), [], 'nothing is writable by the service');
    t.match(readFileSync(join(rootfs, 'etc', 'passwd'), 'utf8'), new RegExp(`^privatoon:x:${uid}:${gid}:`, 'm'), 'the user has a name');
    t.comment(`${entries.filter((e) => e.mode.startsWith('-')).length} files`);
  });

  t.test('the service, run from the root file system as the image says', async (t) => {
    const key = newApiKey('image');
    const keys = tempDir(t, 'image-keys');
    writeFileSync(join(keys, 'api-keys'), key.line + '\n');
    const [port, metricsPort] = [await freePort(), await freePort()];
    // env -u NODE_OPTIONS: tap's instrumentation, which the image's node cannot (and must not) load.
    const child = spawn('env', ['-u', 'NODE_OPTIONS', 'unshare', '--mount', '--propagation', 'private', '--', join(IMAGE, 'run-rootfs.sh'), rootfs, keys, `${uid}:${gid}`, ...entrypoint], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: String(metricsPort), WORKERS: '1', API_KEYS_FILE: '/etc/privatoon/api-keys', SHUTDOWN_GRACE_MS: '0' },
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    const base = `http://127.0.0.1:${port}`;
    await waitFor('the server in the image to listen', () => output.includes('Server listening') || child.exitCode !== null, 60_000);
    t.match(output, /Server listening/, 'it starts (no write, no /tmp, no root needed)');
    if (child.exitCode !== null) {
      t.comment(output);
      return;
    }
    const ready = await fetch(`${base}/readyz`);
    t.equal(ready.status, 200, '/readyz: 200');
    t.match(await ready.json(), { status: 'ready', workers: 1, readyWorkers: 1 });
    t.equal((await fetch(`${base}/healthz`)).status, 200, '/healthz: 200');
    const images = await fixtures();
    const cartoon = await fetch(`${base}/api/cartoonize`, { method: 'POST', body: images.jpeg, headers: { 'x-api-key': key.key, 'content-type': 'image/jpeg' } });
    t.equal(cartoon.status, 200, 'a photo is cartoonized (sharp and onnxruntime load from the image)');
    t.equal(magic(Buffer.from(await cartoon.arrayBuffer())), 'jpeg');
    t.match(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(), /privatoon_queue_depth 0/, 'metrics answer');

    const pid = Number(/"pid":(\d+)/.exec(output)?.[1]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    t.match(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'), `runs as uid ${uid}`);
    t.match(status, new RegExp(`^Gid:\\s+${gid}\\s+${gid}\\s+${gid}\\s+${gid}$`, 'm'), `and gid ${gid}`);
    t.match(status, /^CapEff:\s+0+$/m, 'with no capabilities');
    t.match(status, /^CapPrm:\s+0+$/m);
    t.match(status, /^NoNewPrivs:\s+1$/m);
    const root = readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === '/');
    t.match(root?.split(' ')[5], /(^|,)ro(,|$)/, 'its root file system is read-only');
    t.notOk(existsSync(join(rootfs, 'tmp')), 'and has no /tmp');

    process.kill(pid, 'SIGTERM');
    t.equal(await exited, 0, 'SIGTERM: exit 0');
    t.match(output, /"msg":"stopped"/);
  });
});
