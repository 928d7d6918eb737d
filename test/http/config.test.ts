/**
 * Start-up validation: every option parsed to its type with its default; every bad value named by its variable;
 * key files named by file and line; TLS files checked as a pair.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, loadConfig, readTls } from '../../config.js';
import { KeyFileError, KeySet, loadKeyFile, newApiKey, parseKeyFile } from '../../keys.js';
import { BUILTIN_MODELS_DIR, CARTOONGAN_MODELS_DIR } from '../../paths.js';

t.test('defaults', async (t) => {
  const config = loadConfig({});
  t.equal(config.host, '127.0.0.1');
  t.equal(config.port, 8080);
  t.same(config.pool.modelsDirs, [BUILTIN_MODELS_DIR, CARTOONGAN_MODELS_DIR], 'toon first (the default), then the learned styles');
  t.ok(config.pool.workers >= 1);
  t.equal(config.pool.maxQueue, config.pool.workers * 4, 'queue: four per worker');
  t.equal(config.pool.intraOpThreads, 1);
  t.equal(config.pool.interOpThreads, 1);
  t.equal(config.pool.spinning, false);
  t.equal(config.pool.workerNice, 10, 'workers yield to the event loop');
  t.equal(config.maxUploadBytes, 10 * 1024 * 1024);
  t.equal(config.pool.maxInputPixels, 4096 * 4096);
  t.equal(config.pool.maxOutputSide, 4096);
  t.equal(config.requestDeadlineMs, 30_000);
  t.equal(config.apiKeysFile, null, 'no keys file: the API is closed');
  t.equal(config.rateLimitMax, 60);
  t.equal(config.rateLimitWindowMs, 60_000);
  t.equal(config.uiEnabled, true);
  t.equal(config.uiRequireKey, false);
  t.ok(config.uiRateLimitMax < config.rateLimitMax, 'the UI limit is the stricter one');
  t.equal(config.trustProxy, false);
  t.equal(config.metricsHost, '127.0.0.1');
  t.equal(config.metricsPort, 9464);
  t.equal(config.logLevel, 'info');
  t.equal(config.shutdownTimeoutMs, 10_000);
  t.equal(config.allowRoot, false);
  t.equal(config.tlsCertFile, null);
  t.ok(Object.isFrozen(config) && Object.isFrozen(config.pool) && Object.isFrozen(config.pool.modelsDirs), 'frozen');
});

t.test('values are parsed to their types', async (t) => {
  const config = loadConfig({
    PORT: '9000',
    WORKERS: '3',
    MODELS_DIRS: '/a: /b/c :',
    ORT_SPINNING: 'yes',
    UI_ENABLED: '0',
    TRUST_PROXY: '127.0.0.1, 10.0.0.0/8,::1,loopback',
    LOG_LEVEL: 'WARN',
    METRICS_PORT: '0',
    API_KEYS_FILE: 'keys.txt',
  });
  t.equal(config.port, 9000);
  t.equal(config.pool.maxQueue, 12, 'MAX_QUEUE follows WORKERS');
  t.same(config.pool.modelsDirs, ['/a', '/b/c']);
  t.equal(config.pool.spinning, true);
  t.equal(config.uiEnabled, false);
  t.same(config.trustProxy, ['127.0.0.1', '10.0.0.0/8', '::1', 'loopback']);
  t.equal(config.logLevel, 'warn');
  t.equal(config.metricsPort, 0);
  t.equal(config.apiKeysFile, join(process.cwd(), 'keys.txt'), 'relative paths resolve against the working folder');
});

t.test('bad values name their variable', async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ PORT: 'x' }, /^PORT: must be an integer from 0 to 65535, got "x"$/],
    [{ PORT: '70000' }, /^PORT: /],
    [{ WORKERS: '0' }, /^WORKERS: must be an integer from 1/],
    [{ WORKERS: '1.5' }, /^WORKERS: /],
    [{ MAX_UPLOAD_BYTES: '-1' }, /^MAX_UPLOAD_BYTES: /],
    [{ ORT_SPINNING: 'maybe' }, /^ORT_SPINNING: must be true or false/],
    [{ WORKER_NICE: '20' }, /^WORKER_NICE: must be an integer from 0 to 19/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL: must be one of/],
    [{ TRUST_PROXY: 'true' }, /^TRUST_PROXY: .*would trust any client/],
    [{ TRUST_PROXY: '2' }, /^TRUST_PROXY: /],
    [{ TRUST_PROXY: '10.0.0.0/33' }, /^TRUST_PROXY: "10.0.0.0\/33" is not/],
    [{ HOST: '0.0.0.0', TRUST_PROXY: '10.0.0.1' }, /^PUBLIC_ORIGIN: must be set when HOST \(0\.0\.0\.0\) is not a loopback address/],
    // Behind a proxy on this box the service listens on loopback, but the network reaches it through the proxy.
    [{ TRUST_PROXY: '127.0.0.1' }, /^PUBLIC_ORIGIN: must be set when TRUST_PROXY is \(a proxy in front\) and the web page is on/],
    [{ TRUST_PROXY: '0.0.0.0/0' }, /^TRUST_PROXY: "0.0.0.0\/0" is too wide.*any client/],
    [{ TRUST_PROXY: '127.0.0.1,::/0' }, /^TRUST_PROXY: "::\/0" is too wide/],
    [{ TRUST_PROXY: '0.0.0.0/1' }, /^TRUST_PROXY: "0.0.0.0\/1" is too wide/],
    [{ TRUST_PROXY: '::ffff:0:0/96' }, /^TRUST_PROXY: "::ffff:0:0\/96" is too wide/],
    [{ HOST: 'bad host!' }, /^HOST: /],
    [{ PUBLIC_ORIGIN: 'https://x.org/path' }, /^PUBLIC_ORIGIN: must be a bare origin/],
    [{ MODELS_DIRS: ':' }, /^MODELS_DIRS: /],
    [{ PORT: '9000', METRICS_PORT: '9000' }, /^METRICS_PORT: must differ from PORT/],
    [{ TLS_CERT_FILE: '/x.pem' }, /^TLS_KEY_FILE: .*set together/],
  ];
  for (const [env, pattern] of cases) {
    t.throws(() => loadConfig(env), pattern, JSON.stringify(env));
    t.throws(() => loadConfig(env), ConfigError);
  }
});

t.test('TLS files are read and checked at start-up', async (t) => {
  const dir = t.testdir({ 'cert.pem': 'not a certificate', 'key.pem': 'not a key' });
  t.throws(() => readTls({ tlsCertFile: join(dir, 'missing.pem'), tlsKeyFile: join(dir, 'key.pem') }), /^TLS_CERT_FILE: cannot read .*missing\.pem \(ENOENT\)/);
  t.throws(() => readTls({ tlsCertFile: join(dir, 'cert.pem'), tlsKeyFile: join(dir, 'key.pem') }), /^TLS_KEY_FILE: .* are not a usable pair/);
  t.equal(readTls({ tlsCertFile: null, tlsKeyFile: null }), null);
});

t.test('key files: format, errors by file and line, constant-time lookup', async (t) => {
  const alice = newApiKey('alice');
  const bob = newApiKey('bob.ci-1');
  t.match(alice.key, /^ptk_[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url, prefixed');
  t.match(alice.line, /^alice:[0-9a-f]{64}$/);
  t.not(alice.line.includes(alice.key), true, 'the line holds the hash, not the key');
  t.throws(() => newApiKey('bad id'), RangeError);

  const keys = parseKeyFile('k.txt', `# comment\n\n  ${alice.line}  \r\n${bob.line}\n`);
  t.equal(keys.size, 2);
  t.equal(keys.identify(alice.key), 'alice');
  t.equal(keys.identify(bob.key), 'bob.ci-1');
  t.equal(keys.identify('ptk_wrong'), null);
  t.equal(keys.identify(''), null);
  t.equal(keys.identify('x'.repeat(10_000)), null, 'absurdly long keys are refused before hashing');
  t.equal(KeySet.EMPTY.identify(alice.key), null);

  const bad: [string, RegExp][] = [
    ['alice\n', /^k\.txt:1: expected "id:sha256hex"/],
    [`# c\nbad id:${'a'.repeat(64)}\n`, /^k\.txt:2: the id must be/],
    ['alice:abc\n', /^k\.txt:1: the hash must be 64 hexadecimal digits/],
    [`alice:${alice.key}\n`, /^k\.txt:1: holds a key, not its hash/],
    [`${alice.line}\n${alice.line.replace('alice', 'carol')}\n`, /^k\.txt:2: the same key hash is already on line 1/],
    [`${alice.line}\nalice:${'b'.repeat(64)}\n`, /^k\.txt:2: id "alice" is already used on line 1/],
  ];
  for (const [text, pattern] of bad) {
    t.throws(() => parseKeyFile('k.txt', text), pattern);
    t.throws(() => parseKeyFile('k.txt', text), KeyFileError);
  }
  const dir = t.testdir({});
  await t.rejects(loadKeyFile(join(dir, 'none.txt')), /none\.txt: cannot be read \(ENOENT\)/);
  writeFileSync(join(dir, 'ok.txt'), alice.line);
  t.equal((await loadKeyFile(join(dir, 'ok.txt'))).identify(alice.key), 'alice');
});

t.test('RATE_LIMIT_WINDOWS takes flask-limiter notation', async (t) => {
  t.same(loadConfig({ RATE_LIMIT_WINDOWS: '1000 per day' }).rateLimitWindows, [{ max: 1000, windowMs: 86_400_000 }]);
  t.same(loadConfig({ RATE_LIMIT_WINDOWS: '10/minute; 100 per hour and 5 per 30 seconds' }).rateLimitWindows, [
    { max: 10, windowMs: 60_000 },
    { max: 100, windowMs: 3_600_000 },
    { max: 5, windowMs: 30_000 },
  ]);
  t.same(loadConfig({}).rateLimitWindows, [], 'none by default');
  t.throws(() => loadConfig({ UI_RATE_LIMIT_WINDOWS: '10 per fortnight' }), /UI_RATE_LIMIT_WINDOWS: must be windows such as "1000 per day"/);
  t.throws(() => loadConfig({ RATE_LIMIT_WINDOWS: '0 per day' }), /RATE_LIMIT_WINDOWS/);
});

t.test('HOST beyond loopback needs TLS, a trusted proxy, or ALLOW_PLAIN_HTTP: keys and photos never cross a network in clear by accident', async (t) => {
  t.throws(() => loadConfig({ HOST: '0.0.0.0' }), /^HOST: 0\.0\.0\.0 is reachable beyond this machine, but there is no TLS .* ALLOW_PLAIN_HTTP=true/);
  t.throws(() => loadConfig({ HOST: '10.1.2.3' }), /^HOST: /);
  t.throws(() => loadConfig({ HOST: '::' }), /^HOST: /);
  const origin = { PUBLIC_ORIGIN: 'https://toon.example.org' }; // required beyond loopback too (see below)
  t.equal(loadConfig({ HOST: '0.0.0.0', TRUST_PROXY: '10.0.0.1', ...origin }).host, '0.0.0.0', 'behind a proxy that ends TLS');
  t.equal(loadConfig({ HOST: '0.0.0.0', ALLOW_PLAIN_HTTP: 'true', ...origin }).allowPlainHttp, true, 'or said out loud');
  t.equal(loadConfig({ HOST: '0.0.0.0', TRUST_PROXY: '10.0.0.1', UI_ENABLED: 'false' }).host, '0.0.0.0', 'PUBLIC_ORIGIN is needed only for the web page');
  t.same(loadConfig({ TRUST_PROXY: '127.0.0.1', ...origin }).trustProxy, ['127.0.0.1'], 'behind nginx on this box, with the origin named');
  for (const host of ['127.0.0.1', '127.0.0.2', '::1', 'localhost']) t.equal(loadConfig({ HOST: host }).host, host, `${host}: loopback is fine`);
});
