/**
 * Scale-out as operators run it: the committed systemd/nginx/privatoon.conf (its ports, upstream servers,
 * certificate and log paths rewritten, nothing else) in front of two real instances (server.ts) that share their
 * rate limits through Redis, with a self-signed certificate. Our own nginx and redis-server run as children with
 * their files in a temp folder; all traffic stays on 127.0.0.x. It proves:
 *  - HTTPS end to end with a real photo, an image back; TLS 1.2/1.3 only, no CBC suites, HSTS, HTTP redirects;
 *  - requests spread over both instances (counted on each instance's own metrics);
 *  - RATE_LIMIT_MAX per key holds across both instances together: the N+1th request is refused by whichever
 *    instance serves it;
 *  - the client IP an instance sees is the one nginx forwards, never one the client forges, and a forged
 *    X-Forwarded-For sent straight to an instance from an untrusted address is ignored (observed through the per-IP
 *    bucket of a cheap route: X-RateLimit-Remaining);
 *  - the web page's same-origin check works behind the proxy and its forwarded scheme and host cannot be forged;
 *  - no upload or result touches nginx's disk (nginx runs under strace when it is installed);
 *  - Redis going away: every request is still answered, limits fall back to each instance, the store metric moves,
 *    and counts are shared again once Redis is back;
 *  - native TLS (TLS_CERT_FILE, TLS_KEY_FILE): one instance serves HTTPS itself, with the same TLS profile.
 * Skipped, with a message, without nginx, redis-server or openssl (Debian packages of the same names).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import t from 'tap';
import { newApiKey } from '../../keys.js';
import { ROOT, encodeForm, fixtures, form, magic, sharedImage } from '../helper.js';
import {
  answered,
  freePort,
  request,
  sample,
  scrape,
  selfSigned,
  startInstance,
  startNginx,
  startRedis,
  tempDir,
  waitFor,
  which,
  type Instance,
  type RequestOptions,
} from './tools.js';

const COMMITTED = join(ROOT, 'systemd', 'nginx', 'privatoon.conf');
/** A handshake the server refused, as OpenSSL words it: "sslv3 alert" up to 3.0 (Node 20), "ssl/tls alert" in 3.5 (Node 24). */
const HANDSHAKE_REFUSED = /(sslv3|ssl\/tls) alert handshake failure/;
const NAME = 'toon.example.org';
const committed = readFileSync(COMMITTED, 'utf8');

/** Replaces `pattern` in `text`, insisting on `count` matches: a changed committed file must fail, not pass untested. */
function rewrite(text: string, pattern: RegExp, replacement: string | ((match: string, index: number) => string), count: number): string {
  const found = text.match(new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : pattern.flags + 'g')) ?? [];
  if (found.length !== count) throw new Error(`${COMMITTED}: expected ${count} match(es) of ${pattern}, found ${found.length}; update test/deploy/nginx.test.ts`);
  let i = 0;
  return text.replace(new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : pattern.flags + 'g'), (match) =>
    typeof replacement === 'string' ? replacement : replacement(match, i++),
  );
}

/** The committed site file with this test's ports, upstreams, certificate and log. Nothing else changes. */
function siteConf(o: { https: number; http: number; upstreams: readonly number[]; cert: string; key: string; dir: string }): string {
  let conf = committed;
  conf = rewrite(conf, /^( *)server 127\.0\.0\.1:\d+;$/m, (match, i) => match.replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${o.upstreams[i]}`), o.upstreams.length);
  conf = rewrite(conf, /^( *)listen 80;$/m, `    listen 127.0.0.1:${o.http};`, 1);
  conf = rewrite(conf, /^( *)listen \[::\]:80;\n/m, '', 1);
  conf = rewrite(conf, /^( *)listen 443 ssl http2;$/m, `    listen 127.0.0.1:${o.https} ssl http2;`, 1);
  conf = rewrite(conf, /^( *)listen \[::\]:443 ssl http2;\n/m, '', 1);
  conf = rewrite(conf, /^( *)ssl_certificate \S+;$/m, `    ssl_certificate ${o.cert};`, 1);
  conf = rewrite(conf, /^( *)ssl_certificate_key \S+;$/m, `    ssl_certificate_key ${o.key};`, 1);
  conf = rewrite(conf, /^( *)access_log \S+ privatoon;$/m, `    access_log ${join(o.dir, 'access.log')} privatoon;`, 2);
  return conf;
}

/** The main configuration around it: what /etc/nginx/nginx.conf would hold, with every path in the temp folder. */
function mainConf(dir: string, site: string): string {
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
    client_body_temp_path ${dir}/client_body_temp;
    proxy_temp_path ${dir}/proxy_temp;
    fastcgi_temp_path ${dir}/fastcgi_temp;
    uwsgi_temp_path ${dir}/uwsgi_temp;
    scgi_temp_path ${dir}/scgi_temp;
    access_log ${dir}/other-access.log;
    include ${site};
}
`;
}

/** `12m` -> bytes. */
function size(value: string): number {
  const match = /^(\d+)([kKmM]?)$/.exec(value);
  if (match === null) throw new Error(`not a size: ${value}`);
  return Number(match[1]) * (match[2] === '' ? 1 : /k/i.test(match[2]!) ? 1024 : 1024 * 1024);
}

function directive(conf: string, name: string): string[] {
  return [...conf.matchAll(new RegExp(`^\\s*${name}\\s+([^;]+);`, 'gm'))].map((m) => m[1]!.trim());
}

t.test('the committed nginx configuration: no disk, honest client IPs, quiet logs', async (t) => {
  const maxBody = size(directive(committed, 'client_max_body_size')[0]!);
  const defaultUpload = 10 * 1024 * 1024; // MAX_UPLOAD_BYTES' default (config.ts)
  t.ok(maxBody > defaultUpload && maxBody <= defaultUpload * 1.25, 'client_max_body_size: MAX_UPLOAD_BYTES plus the multipart envelope');
  t.ok(size(directive(committed, 'client_body_buffer_size')[0]!) >= maxBody, 'client_body_buffer_size >= client_max_body_size: a body never needs a temp file');
  t.same(directive(committed, 'proxy_request_buffering'), ['off'], 'uploads are streamed to the instance');
  t.same(directive(committed, 'proxy_buffering'), ['off'], 'results are streamed to the client');
  t.same(directive(committed, 'proxy_max_temp_file_size'), ['0'], 'and never spooled to a file');
  t.notOk(/client_body_in_file_only\s+(on|clean)/.test(committed));
  t.same(directive(committed, 'proxy_set_header X-Forwarded-For'), ['$remote_addr'], 'X-Forwarded-For is overwritten...');
  t.notMatch(committed.replace(/^\s*#.*$/gm, ''), /\$proxy_add_x_forwarded_for/, '...never appended to');
  t.same(directive(committed, 'proxy_set_header X-Forwarded-Proto'), ['$scheme']);
  t.same(directive(committed, 'proxy_set_header X-Forwarded-Host'), ['$host']);
  t.same(directive(committed, 'ssl_protocols'), ['TLSv1.2 TLSv1.3']);
  t.notMatch(directive(committed, 'ssl_ciphers')[0] ?? '', /CBC|SHA(:|$)|RC4|3DES|NULL|MD5/, 'AEAD suites only');
  t.match(committed, /add_header Strict-Transport-Security "max-age=\d+" always;/, 'HSTS');
  const format = /log_format privatoon ((?:'[^']*'\s*)+);/.exec(committed)?.[1] ?? '';
  t.ok(format.includes('$uri'), 'the access log has the path...');
  t.ok(format.includes('$request_id'), '...and the request id...');
  t.same(directive(committed, 'proxy_set_header X-Request-Id'), ['$request_id'], '...which the instances receive (and keep) as X-Request-Id');
  // The web page's notice says what is logged; it names no IP address, so neither may this log (nor may it ever log one
  // without the notice saying so).
  const notice = readFileSync(join(ROOT, 'web', 'index.html'), 'utf8');
  if (!/IP address(es)? (is|are) logged/i.test(notice)) {
    t.notMatch(format, /\$remote_addr|\$binary_remote_addr|\$realip_remote_addr|\$proxy_add_x_forwarded_for/, 'no client address in the log: the page promises none');
  }
  t.notMatch(format, /\$request_uri|\$request[^_]|\$request'|\$args|\$query_string|\$request_body|\$http_|\$cookie_/, '...never the query string, a body, a header or a cookie');
  const readTimeout = Number(/^(\d+)s$/.exec(directive(committed, 'proxy_read_timeout')[0] ?? '')?.[1]);
  t.ok(readTimeout > 60, 'nginx waits longer than REQUEST_TIMEOUT_MS (60 s) and REQUEST_DEADLINE_MS (30 s): the instance answers first');
  t.same(directive(committed, 'limit_conn'), ['privatoon_per_ip 16', 'privatoon_anonymous_uploads 4'], 'connections per address, and anonymous uploads per address, are bounded');
  t.same(directive(committed, 'limit_conn_status'), ['429']);
  const bodyTimeout = Number(/^(\d+)s$/.exec(directive(committed, 'client_body_timeout')[0] ?? '')?.[1]);
  t.ok(bodyTimeout > 0 && bodyTimeout <= 10, `a stalled body is ended within ${bodyTimeout} s`);
  t.match(committed, /upstream privatoon \{[^}]*keepalive \d+;[^}]*keepalive_timeout [1-4]s;/s, 'upstream keepalive, closed before the instance\'s 5 s');
});

const missing = ['nginx', 'redis-server', 'openssl'].filter((p) => which(p) === null);
const skip = missing.length > 0 ? `not installed: ${missing.join(', ')} (Debian packages nginx redis-server openssl)` : false;
const images = await fixtures();
const photo = sharedImage('astronaut_eileen_collins.png');

t.test('nginx with TLS in front of two instances sharing limits in Redis', { skip }, async (t) => {
  const dir = tempDir(t, 'nginx');
  const { cert, key, pem } = selfSigned(dir, NAME);
  const redis = await startRedis(t, dir);
  const keys = { photo: newApiKey('photo'), alice: newApiKey('alice'), bob: newApiKey('bob') };
  const keysFile = join(dir, 'api-keys.txt');
  writeFileSync(keysFile, Object.values(keys).map((k) => k.line).join('\n') + '\n', { mode: 0o600 });
  const RATE_LIMIT_MAX = 3;
  const CHEAP_MAX = 20;
  const env = {
    API_KEYS_FILE: keysFile,
    REDIS_URL: redis.url,
    REDIS_TIMEOUT_MS: '300',
    TRUST_PROXY: '127.0.0.1',
    PUBLIC_ORIGIN: `https://${NAME}`, // required with TRUST_PROXY: the forwarded Host is the browser's
    RATE_LIMIT_MAX: String(RATE_LIMIT_MAX),
    RATE_LIMIT_CHEAP_MAX: String(CHEAP_MAX),
  };
  const [a, b] = (await Promise.all([startInstance(t, env), startInstance(t, env)])) as [Instance, Instance];
  const httpsPort = await freePort();
  const httpPort = await freePort();
  const site = join(dir, 'privatoon.conf');
  writeFileSync(site, siteConf({ https: httpsPort, http: httpPort, upstreams: [a.port, b.port], cert, key, dir }));
  writeFileSync(join(dir, 'nginx.conf'), mainConf(dir, site));
  const traced = which('strace') !== null;
  const trace = join(dir, 'nginx.strace');
  const nginx = await startNginx(t, dir, join(dir, 'nginx.conf'), httpsPort, traced ? trace : undefined);

  const proxy = `https://127.0.0.1:${httpsPort}`;
  const tls = { ca: pem, servername: NAME };
  const via = (path: string, opts: RequestOptions = {}) => request(`${proxy}${path}`, { ...tls, ...opts, headers: { host: NAME, ...opts.headers } });
  const upload = async (apiKey: string, bytes: Buffer, type = 'image/jpeg') => {
    const { payload, contentType } = await encodeForm(form(bytes, { type, filename: 'me.jpg' }));
    return via('/api/cartoonize', { body: payload, headers: { 'content-type': contentType, 'x-api-key': apiKey } });
  };

  t.test('HTTPS end to end with a real photo', async (t) => {
    const bytes = photo !== null ? readFileSync(photo) : images.jpeg;
    if (photo === null) t.comment('../shared/images is absent: a generated photo is used');
    const res = await upload(keys.photo.key, bytes, photo !== null ? 'image/png' : 'image/jpeg');
    t.equal(res.status, 200);
    t.equal(res.headers['content-type'], 'image/jpeg');
    t.equal(magic(res.body), 'jpeg', 'the answer is an image');
    t.equal(res.protocol, 'TLSv1.3');
    t.equal(res.headers['strict-transport-security'], 'max-age=31536000', 'HSTS from nginx');
    t.notOk(res.headers['server']?.includes('/'), 'no nginx version');
    t.equal(res.headers['cache-control'], 'no-store', 'the instance\'s own headers pass through');
  });

  t.test('TLS 1.2 and 1.3 only, AEAD suites only; plain HTTP redirects', async (t) => {
    const tls12 = await via('/healthz', { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' });
    t.equal(tls12.status, 200);
    t.equal(tls12.protocol, 'TLSv1.2', 'TLS 1.2 with an AEAD suite');
    await t.rejects(via('/healthz', { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }), { message: /tlsv1 alert protocol version/ }, 'TLS 1.1: refused by nginx');
    await t.rejects(via('/healthz', { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA' }), { message: HANDSHAKE_REFUSED }, 'a CBC suite: refused');
    const plain = await request(`http://127.0.0.1:${httpPort}/api/styles?x=1`, { headers: { host: NAME } });
    t.equal(plain.status, 301);
    t.equal(plain.headers['location'], `https://${NAME}/api/styles?x=1`, 'plain HTTP: a redirect to HTTPS, nothing else');
  });

  t.test('requests are spread over both instances', async (t) => {
    const before = await Promise.all([scrape(a), scrape(b)]);
    for (let i = 0; i < 10; i++) t.equal((await via('/api/styles')).status, 200);
    const after = await Promise.all([scrape(a), scrape(b)]);
    const served = [0, 1].map((i) => answered(after[i]!, '/api/styles') - answered(before[i]!, '/api/styles'));
    t.equal(served[0]! + served[1]!, 10);
    t.ok(served[0]! >= 3 && served[1]! >= 3, `both instances served (${served.join(' + ')})`);
  });

  t.test(`RATE_LIMIT_MAX (${RATE_LIMIT_MAX}) per key holds across both instances together`, async (t) => {
    const statuses: number[] = [];
    const retryAfter: string[] = [];
    for (let i = 0; i < RATE_LIMIT_MAX + 3; i++) {
      const res = await upload(keys.alice.key, images.jpeg);
      statuses.push(res.status);
      if (res.status === 429) retryAfter.push(String(res.headers['retry-after']));
    }
    t.same(statuses, [200, 200, 200, 429, 429, 429], `${RATE_LIMIT_MAX} answered, then refused`);
    t.ok(retryAfter.every((s) => Number(s) >= 1 && Number(s) <= 60), 'with Retry-After');
    const limited = await Promise.all([scrape(a), scrape(b)]);
    for (const [i, text] of limited.entries()) {
      const count = (status: number) => sample(text, `privatoon_http_request_duration_seconds_count{route="/api/cartoonize",method="POST",status="${status}"}`);
      t.ok(count(200) >= 1 && count(429) >= 1, `instance ${i + 1} answered some (${count(200)}) and refused some (${count(429)}): whichever serves, the count is shared`);
    }
  });

  t.test('the client IP is the one nginx forwards, never one the client forges', async (t) => {
    // GET /api/styles is limited per client IP (RATE_LIMIT_CHEAP_MAX, shared in Redis): X-RateLimit-Remaining says
    // which bucket, and so which client, the instance saw.
    const remaining = async (res: Promise<{ headers: Record<string, unknown> }>) => Number((await res).headers['ratelimit-remaining']);
    t.equal(await remaining(via('/api/styles', { from: '127.0.0.3' })), CHEAP_MAX - 1, 'client 127.0.0.3, through nginx: its own bucket');
    t.equal(await remaining(via('/api/styles', { from: '127.0.0.3', headers: { 'x-forwarded-for': '203.0.113.9' } })), CHEAP_MAX - 2, 'a forged X-Forwarded-For is overwritten by nginx: same bucket');
    t.equal(await remaining(via('/api/styles', { from: '127.0.0.4', headers: { 'x-forwarded-for': '127.0.0.3' } })), CHEAP_MAX - 1, 'another client, even naming the first: its own bucket (not nginx\'s address, not the forged one)');
    t.equal(await remaining(via('/api/styles', { from: '127.0.0.3' })), CHEAP_MAX - 3, 'the first client again, whichever instance serves it');
    const direct = (forged: string) => remaining(request(`${a.base}/api/styles`, { from: '127.0.0.2', headers: { 'x-forwarded-for': forged } }));
    t.equal(await direct('127.0.0.3'), CHEAP_MAX - 1, 'straight to an instance from an untrusted address: X-Forwarded-For ignored');
    t.equal(await direct('127.0.0.4'), CHEAP_MAX - 2, 'counted by its own address, whatever it forges');
  });

  t.test('the web page behind the proxy: scheme and host are forwarded, and cannot be forged', async (t) => {
    const { payload, contentType } = await encodeForm(form(images.jpeg));
    const ui = (headers: Record<string, string>) => via('/ui/cartoonize', { body: payload, headers: { 'content-type': contentType, ...headers } });
    const ok = await ui({ origin: `https://${NAME}`, 'sec-fetch-site': 'same-origin' });
    t.equal(ok.status, 200, 'a same-origin upload from the page (https, forwarded by nginx)');
    t.equal(magic(ok.body), 'jpeg');
    t.equal((await ui({ origin: 'https://evil.example', 'x-forwarded-host': 'evil.example' })).status, 403, 'a forged X-Forwarded-Host is overwritten');
    // DNS rebinding: a page on evil.example whose name now points at this proxy sends its own Host and Origin, which
    // nginx forwards as they are (the first server block answers unknown names); PUBLIC_ORIGIN refuses it.
    t.equal((await ui({ host: 'evil.example', origin: 'https://evil.example' })).status, 403, 'a rebound host is not our origin');
    t.equal((await ui({ origin: `http://${NAME}`, 'x-forwarded-proto': 'http' })).status, 403, 'a forged X-Forwarded-Proto is overwritten');
  });

  t.test('limit_conn: a fifth anonymous upload from one address is refused by nginx (429)', async (t) => {
    const { payload, contentType } = await encodeForm(form(images.jpeg));
    const stalled: TLSSocket[] = [];
    t.teardown(() => stalled.forEach((s) => s.destroy()));
    for (let i = 0; i < 4; i++) {
      // From 127.0.0.7: a TCP socket bound there, wrapped in TLS.
      const tcp = netConnect({ host: '127.0.0.1', port: httpsPort, localAddress: '127.0.0.7' });
      tcp.on('error', () => {});
      await new Promise<void>((resolve) => tcp.once('connect', () => resolve()));
      const socket = tlsConnect({ socket: tcp, ca: pem, servername: NAME, ALPNProtocols: ['http/1.1'] });
      socket.on('error', () => {});
      await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
      socket.write(
        `POST /ui/cartoonize HTTP/1.1\r\nHost: ${NAME}\r\nContent-Type: ${contentType}\r\nContent-Length: ${payload.length}\r\n` +
          `Origin: https://${NAME}\r\nSec-Fetch-Site: same-origin\r\n\r\n`,
      );
      socket.write(payload.subarray(0, 100));
      stalled.push(socket);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    const fifth = await via('/ui/cartoonize', { body: payload, from: '127.0.0.7', headers: { 'content-type': contentType, origin: `https://${NAME}`, 'sec-fetch-site': 'same-origin' } });
    t.equal(fifth.status, 429, 'refused');
    t.notMatch(fifth.body.toString('utf8'), /PTOON_/, 'by nginx itself, before it reaches an instance (whose answers are coded JSON)');
    const other = await via('/api/styles', { from: '127.0.0.7' });
    t.equal(other.status, 200, 'other URLs from the same address are not in that count');
  });

  t.test('no upload or result touches nginx\'s disk', { skip: traced ? false : 'strace is not installed' }, async (t) => {
    // The photo above (hundreds of KiB, far above nginx's default 16 KiB body buffer) and its result went through.
    const lines = readFileSync(trace, 'utf8').split('\n');
    t.ok(lines.some((l) => l.includes('nginx.conf')), 'the trace covers nginx');
    const temp = lines.filter((l) => /(client_body_temp|proxy_temp)\/\d/.test(l));
    t.same(temp, [], 'no temp file for a request body or a response');
    const created = lines.filter((l) => /open(at)?\(.*O_CREAT/.test(l) && !/\.(log|pid)"|nginx\.conf|\/dev\/null/.test(l));
    t.same(created, [], 'no file created but logs and the pid file');
  });

  t.test('Redis goes away: answers go on, limits fall back to each instance, the metric moves; then shared again', async (t) => {
    const errors = async () => Promise.all([scrape(a), scrape(b)]).then((texts) => texts.map((x) => sample(x, 'privatoon_rate_limit_store_errors_total')));
    const up = async () => Promise.all([scrape(a), scrape(b)]).then((texts) => texts.map((x) => sample(x, 'privatoon_rate_limit_store_up')));
    t.same(await up(), [1, 1], 'both instances use Redis');
    t.same(await errors(), [0, 0]);
    await redis.stop();
    await waitFor('both instances to notice', async () => (await up()).every((v) => v === 0));
    const statuses: number[] = [];
    for (let i = 0; i < 2 * RATE_LIMIT_MAX + 2; i++) {
      const res = await upload(keys.bob.key, images.jpeg);
      statuses.push(res.status);
      t.ok(res.ms < 2000, `answered in ${Math.round(res.ms)} ms`);
    }
    const count = (status: number) => statuses.filter((s) => s === status).length;
    t.equal(count(200), 2 * RATE_LIMIT_MAX, `every request answered: ${RATE_LIMIT_MAX} per instance...`);
    t.equal(count(429), 2, '...and limits still hold, per instance (in-process fallback)');
    const moved = await errors();
    t.ok(moved.every((n) => n >= RATE_LIMIT_MAX), `privatoon_rate_limit_store_errors_total moved on both (${moved.join(', ')})`);
    for (const instance of [a, b]) t.match(instance.output(), /"level":40.*rate-limit store unreachable: counting in this process/, 'a warning in each log');

    await startRedis(t, dir, { port: redis.port });
    await waitFor('both instances to reconnect', async () => (await up()).every((v) => v === 1), 10_000);
    const shared = [await via('/api/styles', { from: '127.0.0.7' }), await via('/api/styles', { from: '127.0.0.7' })];
    t.same(shared.map((r) => Number(r.headers['ratelimit-remaining'])), [CHEAP_MAX - 1, CHEAP_MAX - 2], 'counts are shared again');
  });

  t.test('logs: nginx\'s and the instances\' hold no key, no query string, no file name', async (t) => {
    await nginx.stop();
    const access = readFileSync(join(dir, 'access.log'), 'utf8');
    t.match(access, /"POST \/api\/cartoonize HTTP\/1\.1" 200 /, 'nginx logged the requests');
    t.notMatch(access, /127\.0\.0\.3/, 'without the client address (the page promises none)');
    // One id joins the proxy's line, the instance's line and the answer.
    const ids = [...access.matchAll(/\] ([0-9a-f]{32}) "/g)].map((m) => m[1]!);
    t.ok(ids.length > 0, 'nginx logged its request ids');
    const instanceLogs = a.output() + b.output();
    t.ok(ids.some((id) => instanceLogs.includes(`"reqId":"${id}"`)), 'an instance logged the same id');
    const logs = [access, a.output(), b.output()].join('\n');
    for (const secret of Object.values(keys).map((k) => k.key)) t.notOk(logs.includes(secret), 'no API key');
    t.notMatch(logs, /\?x=1|me\.jpg|astronaut/, 'no query string, no file name');
  });
});

t.test('native TLS: one instance serves HTTPS itself (TLS_CERT_FILE, TLS_KEY_FILE)', { skip: which('openssl') === null ? 'openssl is not installed' : false }, async (t) => {
  const dir = tempDir(t, 'native-tls');
  const { cert, key, pem } = selfSigned(dir, NAME);
  const apiKey = newApiKey('native');
  writeFileSync(join(dir, 'api-keys.txt'), apiKey.line + '\n');
  const server = await startInstance(t, { API_KEYS_FILE: join(dir, 'api-keys.txt'), TLS_CERT_FILE: cert, TLS_KEY_FILE: key });
  t.match(server.base, /^https:\/\//, 'it says it listens on https');
  const tls = { ca: pem, servername: NAME };
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const res = await request(`${server.base}/api/cartoonize`, { ...tls, body: payload, headers: { 'content-type': contentType, 'x-api-key': apiKey.key } });
  t.equal(res.status, 200);
  t.equal(magic(res.body), 'jpeg', 'an image over HTTPS');
  t.equal(res.protocol, 'TLSv1.3');
  t.match(res.headers['strict-transport-security'], /max-age=\d+/, 'HSTS from the instance');
  const tls12 = await request(`${server.base}/healthz`, { ...tls, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-CHACHA20-POLY1305' });
  t.equal(tls12.protocol, 'TLSv1.2', 'TLS 1.2 with an AEAD suite');
  await t.rejects(request(`${server.base}/healthz`, { ...tls, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }), { message: /tlsv1 alert protocol version/ }, 'TLS 1.1: refused');
  await t.rejects(request(`${server.base}/healthz`, { ...tls, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA' }), { message: HANDSHAKE_REFUSED }, 'a CBC suite: refused');
  await t.rejects(request(`${server.base.replace('https:', 'http:')}/healthz`, { timeoutMs: 3000 }), 'no plain HTTP on the TLS port');
});
