/**
 * Rate-limit counts in Redis (REDIS_URL), with the apps built exactly as the server builds them: two apps share one
 * budget; when Redis dies each falls back to its own in-process counts (still limited, per instance), warns once and
 * counts the fallback in privatoon_rate_limit_store_errors_total, then shares again when Redis is back; a hung Redis
 * costs one bounded wait (REDIS_TIMEOUT_MS) per second; an unreachable Redis at start-up does not stop the start.
 * Our own redis-server (loopback, free port, no persistence); skipped without one (Debian package `redis-server`).
 */
import t from 'tap';
import { ConfigError, loadConfig } from '../../config.js';
import { describeRedisUrl, RETRY_AFTER_FAILURE_MS } from '../../plugins/rate-limit-redis.js';
import { build, fakePool, sleep } from '../helper.js';
import { freePort, sample, startRedis, tempDir, waitFor, which } from './tools.js';

t.test('REDIS_URL and REDIS_TIMEOUT_MS are checked at start-up, and the password is never echoed', async (t) => {
  t.equal(loadConfig({}).redisUrl, null, 'default: no Redis, counts in-process');
  t.equal(loadConfig({}).redisTimeoutMs, 500);
  t.equal(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379' }).redisUrl, 'redis://127.0.0.1:6379');
  t.equal(loadConfig({ REDIS_URL: 'rediss://user:pw@redis.internal:6380/2' }).redisUrl, 'rediss://user:pw@redis.internal:6380/2');
  for (const bad of ['http://127.0.0.1:6379', 'redis://', 'localhost:6379', 'redis://:s3cret@h:6379/x', 'redis://:s3cret@h:6379?db=1', 'redis://:s3cret@h/1#x']) {
    const error = t.throws(() => loadConfig({ REDIS_URL: bad })) as ConfigError;
    t.ok(error instanceof ConfigError && /^REDIS_URL: must be redis:\/\//.test(error.message), `${bad.replace('s3cret', '***')}: ${error.message}`);
    t.notMatch(error.message, /s3cret/, 'the password is not in the message');
  }
  t.throws(() => loadConfig({ REDIS_TIMEOUT_MS: '0' }), /^REDIS_TIMEOUT_MS: must be an integer from 10 to 10000/);
  t.equal(describeRedisUrl('redis://user:s3cret@h:6379/2'), 'redis://h:6379/2', 'logs name the store without credentials');
});

const redisServer = which('redis-server');
const skip = redisServer === null ? 'redis-server is not installed (apt-get install redis-server)' : false;

const TIMEOUT_MS = 1000;

t.test('with Redis', { skip }, async (t) => {
  const dir = tempDir(t, 'redis');
  const redis = await startRedis(t, dir);
  const env = (extra: Record<string, string> = {}) => ({
    REDIS_URL: redis.url,
    // Long enough that any wait on Redis stands out from a loaded machine's slowness.
    REDIS_TIMEOUT_MS: String(TIMEOUT_MS),
    RATE_LIMIT_CHEAP_MAX: '3',
    LOG_LEVEL: 'info',
    ...extra,
  });
  const a = await build(t, { pool: fakePool(), env: env() });
  const b = await build(t, { pool: fakePool(), env: env() });
  const styles = (app: typeof a.app, ip: string) => app.inject({ url: '/api/styles', remoteAddress: ip });
  const metrics = async (app: typeof a.app) => app.metrics.registry.metrics();

  t.test('two instances, one budget', async (t) => {
    t.equal(sample(await metrics(a.app), 'privatoon_rate_limit_store_up'), 1, 'store up');
    t.match(a.logs.text, /rate-limit store reachable: limits are shared by every instance/);
    const remaining: (string | number | string[] | undefined)[] = [];
    for (const app of [a.app, b.app, a.app]) {
      const res = await styles(app, '10.1.0.1');
      t.equal(res.statusCode, 200);
      remaining.push(res.headers['ratelimit-remaining']);
    }
    t.same(remaining, ['2', '1', '0'], 'each instance sees the count of both');
    const fourth = await styles(b.app, '10.1.0.1');
    t.equal(fourth.statusCode, 429, 'the 4th request is refused by the instance that saw only one');
    t.ok(Number(fourth.headers['retry-after']) >= 1);
    t.equal((await styles(a.app, '10.1.0.2')).statusCode, 200, 'another client has its own budget');
    t.equal(sample(await metrics(a.app), 'privatoon_rate_limit_store_errors_total'), 0, 'no store errors');
  });

  t.test('a hung Redis costs one bounded wait, then a second of in-process decisions', async (t) => {
    process.kill(redis.child.pid!, 'SIGSTOP');
    t.teardown(() => void process.kill(redis.child.pid!, 'SIGCONT'));
    const started = performance.now();
    const first = await styles(a.app, '10.2.0.1');
    const firstMs = performance.now() - started;
    t.equal(first.statusCode, 200, 'answered');
    t.ok(firstMs >= TIMEOUT_MS * 0.9 && firstMs < TIMEOUT_MS * 2.5, `after about REDIS_TIMEOUT_MS (${Math.round(firstMs)} ms)`);
    const again = performance.now();
    for (let i = 0; i < 2; i++) t.equal((await styles(a.app, '10.2.0.1')).statusCode, 200);
    t.equal((await styles(a.app, '10.2.0.1')).statusCode, 429, 'still limited, in-process');
    const rest = performance.now() - again;
    t.ok(rest < TIMEOUT_MS / 2, `without waiting for Redis again (3 decisions in ${Math.round(rest)} ms)`);
    t.equal(sample(await metrics(a.app), 'privatoon_rate_limit_store_up'), 0, 'store down');
    t.ok(sample(await metrics(a.app), 'privatoon_rate_limit_store_errors_total') >= 4, 'each decision made without Redis is counted');
    process.kill(redis.child.pid!, 'SIGCONT');
    await sleep(RETRY_AFTER_FAILURE_MS + 50);
    t.equal((await styles(a.app, '10.2.0.9')).statusCode, 200);
    t.equal(sample(await metrics(a.app), 'privatoon_rate_limit_store_up'), 1, 'Redis is tried again after a second, and is back');
    t.match(a.logs.text, /"reason":"Command timed out".*rate-limit store unreachable/, 'the outage was logged with its reason');
  });

  t.test('Redis gone: each instance limits on its own, warns once, counts; shared again when Redis is back', async (t) => {
    const before = sample(await metrics(b.app), 'privatoon_rate_limit_store_errors_total');
    await redis.stop();
    await waitFor('both instances to see the connection close', async () => sample(await metrics(a.app), 'privatoon_rate_limit_store_up') === 0 && sample(await metrics(b.app), 'privatoon_rate_limit_store_up') === 0);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      for (const app of [a.app, b.app]) {
        const started = performance.now();
        statuses.push((await styles(app, '10.3.0.1')).statusCode);
        t.ok(performance.now() - started < TIMEOUT_MS / 2, 'no waiting on a dead Redis');
      }
    }
    t.same(statuses, [200, 200, 200, 200, 200, 200, 429, 429], 'limits still hold, per instance (2 x 3 requests)');
    t.equal(sample(await metrics(b.app), 'privatoon_rate_limit_store_errors_total') - before, 4, 'the metric moves with each decision');
    const warnings = b.logs.text.split('\n').filter((l) => l.includes('rate-limit store unreachable'));
    t.equal(warnings.length, 1, 'one warning for the outage, not one per request');
    t.match(warnings[0], /"level":40/);
    t.notMatch(b.logs.text, /10\.3\.0\.1/, 'the log lines name no client');

    const back = await startRedis(t, dir, { port: redis.port });
    await waitFor('the instances to reconnect', async () => sample(await metrics(a.app), 'privatoon_rate_limit_store_up') === 1 && sample(await metrics(b.app), 'privatoon_rate_limit_store_up') === 1, 8000);
    const shared = [(await styles(a.app, '10.4.0.1')).headers['ratelimit-remaining'], (await styles(b.app, '10.4.0.1')).headers['ratelimit-remaining']];
    t.same(shared, ['2', '1'], 'counts are shared again');
    t.match(b.logs.text, /rate-limit store unreachable[\s\S]*rate-limit store reachable/, 'and the recovery is logged');
    await back.stop();
  });
});

t.test('Redis unreachable at start-up: the service starts in fallback and connects when Redis comes', { skip }, async (t) => {
  const dir = tempDir(t, 'redis-late');
  const port = await freePort();
  const started = performance.now();
  const { app, logs } = await build(t, { pool: fakePool(), env: { REDIS_URL: `redis://:s3cret@127.0.0.1:${port}`, REDIS_TIMEOUT_MS: '200', LOG_LEVEL: 'info' } });
  t.ok(performance.now() - started < 3000, 'start-up is not held up');
  t.match(logs.text, /REDIS_URL: the rate-limit store is unreachable at start-up/);
  t.match(logs.text, new RegExp(`"store":"redis://127\\.0\\.0\\.1:${port}"`), 'named without its password');
  t.notMatch(logs.text, /s3cret/);
  t.equal((await app.inject({ url: '/api/styles' })).statusCode, 200, 'and serves');
  t.equal(sample(await app.metrics.registry.metrics(), 'privatoon_rate_limit_store_up'), 0);
  const redis = await startRedis(t, dir, { port, password: 's3cret' });
  await waitFor('the client to connect', async () => sample(await app.metrics.registry.metrics(), 'privatoon_rate_limit_store_up') === 1, 8000);
  t.equal((await app.inject({ url: '/api/styles' })).statusCode, 200);
  await redis.stop();
});
