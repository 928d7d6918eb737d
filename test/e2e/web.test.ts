/**
 * The web page end to end: Debian's Chromium (headless, through playwright-core) against the real app listening on
 * 127.0.0.1, with the built-in `toon` model.
 *
 * A person's path: load the page, read the privacy notice, choose a photo, get the cartoon, download it; and each
 * error the page must explain. Throughout, the page may talk to nobody but the server, and keeps nothing.
 *
 * Writes test/artifacts/web.png (and web-mobile.png): the page with a real result, for a person to look at.
 * With SCREENSHOT_FOR_DOCS=1 it also writes docs/web-ui.png (the public-domain astronaut photo only).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import sharp from 'sharp';
import t from 'tap';
import { ROOT, build, listen, sharedImage, startPool, waitUntilReady } from '../helper.js';
import { chromiumMissing, launchChromium, readAll, recordRequests, staysWithServer } from './browser.js';
import { withFault } from '../fixtures/faults.js';
import { syntheticPhoto } from '../../bench/photos.js';

const ARTIFACTS = join(ROOT, 'test', 'artifacts');
/** Small enough that a too-large file is cheap to make, large enough for the 512x512 photo (773 KB). */
const MAX_UPLOAD_BYTES = 1024 * 1024;
/** The env of the apps under test (on top of test/helper.ts's): logs on, to check what they hold; a low upload limit. */
const ENV = { LOG_LEVEL: 'info', MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES), UI_RATE_LIMIT_MAX: '100' };
/** The stock app names its operator, as a public deployment should. */
const OPERATOR = { OPERATOR_NAME: 'Example Toons <Ltd>', OPERATOR_CONTACT: 'privacy@example.org', PRIVACY_POLICY_URL: 'https://example.org/privacy' };

const skip = chromiumMissing();
if (skip !== null) {
  t.comment(skip);
  t.plan(0, skip);
} else {
  await main();
}

/** The photo to upload: the public-domain astronaut portrait when shared/ has it, else a generated 512x512 PNG. */
async function photo(): Promise<{ name: string; mimeType: string; buffer: Buffer; real: boolean }> {
  const astronaut = sharedImage('astronaut_eileen_collins.png');
  if (astronaut !== null) return { name: 'astronaut_eileen_collins.png', mimeType: 'image/png', buffer: readFileSync(astronaut), real: true };
  // Drawn from pixels, not SVG: the workers block every loader but JPEG, PNG and WebP, process-wide.
  const face = await syntheticPhoto(512, 512);
  return { name: 'generated-portrait.png', mimeType: 'image/png', buffer: await sharp(face).png().toBuffer(), real: false };
}

async function main() {
  // One pool for both apps under test, on the fault-injecting worker: the second app gets an upload that hangs until its deadline.
  const pool = await startPool(t, { faults: true });
  const { app, logs } = await build(t, { env: ENV, pool });
  const origin = await listen(app);
  // The app with the stock limits (10 MB uploads), as a person meets it: for the pictures people look at.
  // (Every app is built before the first subtest: tap ends the root test when it idles between subtests.)
  const stock = await build(t, { env: { LOG_LEVEL: 'info', ...OPERATOR }, pool });
  const stockOrigin = await listen(stock.app);
  /** The origins of the apps under test: the only places the page may talk to. */
  const servers = [origin, stockOrigin];

  const browser: Browser = await launchChromium();
  t.teardown(() => browser.close());
  const context: BrowserContext = await browser.newContext({ viewport: { width: 1200, height: 900 }, acceptDownloads: true });
  const requests = recordRequests(context);
  const page: Page = await context.newPage();

  const pageErrors: string[] = [];
  const cspViolations: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });

  const input = await photo();
  const status = page.locator('#status');
  const choose = (file: { name: string; mimeType: string; buffer: Buffer }) => page.setInputFiles('#file', file);

  await t.test('the page and its assets are served with the right headers', async (t) => {
    for (const [path, type] of [
      ['/', 'text/html'],
      ['/app.js', 'text/javascript'],
      ['/app.css', 'text/css'],
    ] as const) {
      const res = await fetch(origin + path);
      t.equal(res.status, 200, `${path} is served`);
      t.match(res.headers.get('content-type'), type, `${path} content type`);
      t.equal(res.headers.get('x-content-type-options'), 'nosniff', `${path} nosniff`);
      t.match(res.headers.get('cache-control'), /no-cache|max-age/, `${path} cache-control`);
      t.match(res.headers.get('content-security-policy'), /script-src 'self'/, `${path} carries the CSP`);
      const etag = res.headers.get('etag');
      t.ok(etag, `${path} has an etag`);
      const again = await fetch(origin + path, { headers: { 'if-none-match': etag ?? '' } });
      t.equal(again.status, 304, `${path} revalidates with 304`);
    }
    const styles = await fetch(`${origin}/api/styles`);
    t.equal(styles.status, 200, '/api/styles needs no API key');

    // Nothing inline (the CSP would block it) and nothing from elsewhere.
    const html = await (await fetch(`${origin}/`)).text();
    t.notMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline script');
    t.notMatch(html, /<style|\sstyle=/i, 'no inline style');
    t.notMatch(html, /\son[a-z]+=/i, 'no inline event handler');
    t.notMatch(html, /(src|href)="(https?:)?\/\//i, 'no third-party asset');
    t.match(html, '<meta name="viewport"', 'a viewport for phones');
  });

  await t.test('the page loads with its privacy notice and the styles', async (t) => {
    await page.goto(`${origin}/`);
    t.equal(await page.title(), 'privatoon — turn a portrait into a cartoon, privately');
    t.equal(await page.locator('html').getAttribute('lang'), 'en');
    const notice = page.locator('#privacy');
    t.ok(await notice.isVisible(), 'the privacy notice is visible');
    const text = await notice.innerText();
    for (const phrase of [
      'Sent once',
      'in memory',
      'Nothing is stored',
      'No file is written',
      'Results are not kept',
      'What is logged',
      'Never the picture',
      'not your IP address',
      'Upload only photos you have the right to use, of people who agree',
      'has not published a name or a contact',
    ]) {
      t.match(text, phrase, `the notice says "${phrase}"`);
    }
    await ready(page);
    const styles = await page.locator('#style option').evaluateAll((options) => options.map((o) => o.getAttribute('value')));
    t.ok(styles.includes('toon'), 'the style list comes from /api/styles');
    t.equal(await page.locator('#style').inputValue(), 'toon', 'the built-in style is preselected');
    t.match(await page.locator('#max-size').innerText(), '1 MB', 'the upload limit comes from /api/styles');
    t.ok(await page.locator('#submit').isDisabled(), 'nothing to send before a photo is chosen');
    t.equal(await page.locator('#status').getAttribute('aria-live'), 'polite', 'status is a polite live region');
  });

  await t.test('the drop zone is keyboard reachable and shows focus', async (t) => {
    await page.locator('body').focus();
    let reached = false;
    for (let i = 0; i < 10 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = (await page.evaluate('document.activeElement && document.activeElement.id')) === 'file';
    }
    t.ok(reached, 'Tab reaches the file input');
    const outline = await page.locator('#dropzone').evaluate((el: any) => el.ownerDocument.defaultView.getComputedStyle(el).outlineStyle as string);
    t.not(outline, 'none', 'the drop zone shows the focus');
    t.equal(await page.locator('#file').getAttribute('accept'), 'image/jpeg,image/png,image/webp');
  });

  let resultUrl = '';
  await t.test('a real photo becomes a cartoon', async (t) => {
    await choose(input);
    await loaded(page, '#before');
    t.ok(await page.locator('#submit').isEnabled(), 'Cartoonize is enabled once a photo is chosen');

    // The form's outline, seen on its way out (Chromium leaves the file's bytes out of it; the server gets them).
    let outline = '';
    await page.route(`${origin}/ui/cartoonize`, async (route) => {
      outline = route.request().postDataBuffer()?.toString('latin1') ?? '';
      t.match(route.request().headers()['content-type'] ?? '', /^multipart\/form-data/);
      await route.continue();
    });
    await page.locator('#submit').click();
    t.equal(await page.locator('#work').getAttribute('aria-busy'), 'true', 'the work area is busy meanwhile');
    t.ok(await page.locator('#submit').isDisabled(), 'the button is disabled meanwhile');
    t.ok(await page.locator('#progress').isVisible(), 'a progress bar is shown meanwhile');
    await settled(page, 'success');
    await page.unroute(`${origin}/ui/cartoonize`);
    const fields = [...outline.matchAll(/name="([^"]+)"(?:; filename="([^"]*)")?/g)].map((m) => (m[2] === undefined ? m[1] : `${m[1]}:${m[2]}`));
    t.same(fields, ['style', 'format', 'image:photo.png'], 'style and format first, then the image, under a neutral name');
    t.notMatch(outline, input.name, 'the upload does not carry the file name');
    const size = await naturalSize(page, '#after');
    t.same(size, [512, 512], 'the cartoon of a 512x512 photo is 512x512');
    t.match(await status.innerText(), 'Done', 'the status says it is done');
    t.equal(await page.locator('#work').getAttribute('aria-busy'), 'false', 'no longer busy');
    t.ok(await page.locator('#submit').isEnabled(), 'the button is enabled again');
    resultUrl = (await page.locator('#after').getAttribute('src')) ?? '';
    t.match(resultUrl, /^blob:/, 'the cartoon is shown from an object URL');

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'web.png') });
  });

  await t.test('the download is the cartoon, under a neutral name', async (t) => {
    t.equal(await page.locator('#download').getAttribute('href'), resultUrl, 'the link points at the shown cartoon');
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#download').click()]);
    t.equal(download.suggestedFilename(), 'cartoon.jpg', 'a neutral file name, not the upload’s');
    const bytes = await readAll(await download.createReadStream());
    const meta = await sharp(bytes).metadata();
    t.equal(meta.format, 'jpeg');
    t.same([meta.width, meta.height], [512, 512]);
  });

  await t.test('the chosen format is the one received', async (t) => {
    await page.locator('#format').selectOption('png');
    await page.locator('#submit').click();
    await settled(page, 'success');
    t.equal(await page.locator('#download').getAttribute('download'), 'cartoon.png', 'the name follows the format');
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#download').click()]);
    const meta = await sharp(await readAll(await download.createReadStream())).metadata();
    t.equal(meta.format, 'png');
    t.same([meta.width, meta.height], [512, 512]);
    await page.locator('#format').selectOption('jpeg');
  });

  await t.test('object URLs are revoked when replaced and when the page is hidden', async (t) => {
    // Loaded as an image (the page's CSP allows blob: images, not blob: fetches): a revoked URL fails to load.
    const alive = (url: string) =>
      page.evaluate(async (u) => {
        const img = new (globalThis as any).Image();
        img.src = u;
        return img.decode().then(
          () => true,
          () => false,
        ) as Promise<boolean>;
      }, url);
    const before = (await page.locator('#before').getAttribute('src')) ?? '';
    const after = (await page.locator('#after').getAttribute('src')) ?? '';
    t.ok(await alive(before), 'the preview URL lives while shown');
    t.ok(await alive(after), 'the result URL lives while shown');
    await choose(input);
    await page.locator(`#before:not([src="${before}"])`).waitFor({ state: 'attached' });
    t.notOk(await alive(before), 'the old preview URL is revoked once replaced');
    t.notOk(await alive(after), 'the old result URL is revoked once a new photo is chosen');
    t.ok(await page.locator('#result-actions').isHidden(), 'no stale download link');

    const current = (await page.locator('#before').getAttribute('src')) ?? '';
    await page.evaluate("window.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: false }))");
    t.notOk(await alive(current), 'pagehide revokes what is left');
  });

  await t.test('the page keeps nothing in the browser', async (t) => {
    const stored = await page.evaluate('({ local: localStorage.length, session: sessionStorage.length, cookie: document.cookie })');
    t.same(stored, { local: 0, session: 0, cookie: '' });
    t.same(await context.cookies(), [], 'no cookies');
    t.equal(await page.evaluate('indexedDB.databases().then((d) => d.length)'), 0, 'no IndexedDB');
  });

  const errorCases: { name: string; file: () => Promise<{ name: string; mimeType: string; buffer: Buffer }>; expect: RegExp; server: boolean; raiseLimit?: boolean }[] = [
    {
      name: 'an SVG is refused at once, in the browser',
      file: async () => ({ name: 'drawing.svg', mimeType: 'image/svg+xml', buffer: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>') }),
      expect: /send a JPEG, PNG or WebP/,
      server: false,
    },
    {
      name: 'an SVG that claims to be a PNG is refused by the server (415)',
      file: async () => ({ name: 'drawing.png', mimeType: 'image/png', buffer: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>') }),
      expect: /send a JPEG, PNG or WebP/,
      server: true,
    },
    {
      name: 'a damaged PNG is refused by the server (422)',
      file: async () => ({ name: 'cut.png', mimeType: 'image/png', buffer: input.buffer.subarray(0, 4096) }),
      expect: /could not be read/,
      server: true,
    },
    {
      name: 'a too-large photo is refused at once, with the limit',
      file: async () => ({ name: 'big.png', mimeType: 'image/png', buffer: await noise(MAX_UPLOAD_BYTES + 1) }),
      expect: /too large.*limit is 1 MB/,
      server: false,
    },
    {
      name: 'a too-large photo is refused by the server too (413), with the limit',
      file: async () => ({ name: 'big.png', mimeType: 'image/png', buffer: await noise(MAX_UPLOAD_BYTES + 1) }),
      expect: /too large.*limit is 1 MB/,
      server: true,
      raiseLimit: true,
    },
  ];

  for (const c of errorCases) {
    await t.test(c.name, async (t) => {
      await page.goto(`${origin}/`);
      await ready(page);
      if (c.raiseLimit === true) {
        // As if the page's idea of the limit were stale: the server is the authority.
        await page.locator('#form').evaluate((form: any) => {
          form.dataset.maxUploadBytes = String(64 * 1024 * 1024);
        });
      }
      let posted = false;
      const onRequest = (r: { url: () => string }) => {
        if (r.url().endsWith('/ui/cartoonize')) posted = true;
      };
      page.on('request', onRequest);
      await choose(await c.file());
      if (c.server) {
        await page.locator('#submit').click();
        await settled(page, 'error');
      } else {
        await settled(page, 'error');
        t.ok(await page.locator('#submit').isDisabled(), 'nothing to send');
      }
      page.off('request', onRequest);
      t.equal(posted, c.server, c.server ? 'the server decided' : 'nothing was uploaded');
      t.match(await status.innerText(), c.expect);
      t.ok(await status.isVisible(), 'the message is visible');
      t.equal(await page.locator('#work').getAttribute('aria-busy'), 'false');
    });
  }

  await t.test('busy, slow and unreachable servers are explained', async (t) => {
    const answers: { name: string; status: number; headers: Record<string, string>; body: object | null; expect: RegExp }[] = [
      {
        name: '503 busy, with Retry-After',
        status: 503,
        headers: { 'retry-after': '7' },
        body: { statusCode: 503, code: 'PTOON_BUSY', error: 'Service Unavailable', message: 'The service is at capacity; retry after 7 s' },
        expect: /busy.*Try again in 7 seconds/,
      },
      {
        name: '504 too slow',
        status: 504,
        headers: {},
        body: { statusCode: 504, code: 'PTOON_DEADLINE', error: 'Gateway Timeout', message: 'The request took longer than 30000 ms and was cancelled' },
        expect: /took too long/,
      },
      { name: 'network failure', status: 0, headers: {}, body: null, expect: /Could not reach the server/ },
    ];
    for (const a of answers) {
      await page.goto(`${origin}/`);
      await ready(page);
      // The browser side of these answers only: the server's own 503/504 are tested in test/http.
      await page.route(`${origin}/ui/cartoonize`, (route) =>
        a.body === null
          ? route.abort('failed')
          : route.fulfill({ status: a.status, headers: a.headers, contentType: 'application/json', body: JSON.stringify(a.body) }),
      );
      await choose(input);
      await page.locator('#submit').click();
      await settled(page, 'error');
      t.match(await status.innerText(), a.expect, a.name);
      t.ok(await page.locator('#submit').isEnabled(), `${a.name}: the button is enabled again`);
      await page.unroute(`${origin}/ui/cartoonize`);
    }
  });

  await t.test('a real deadline (504) and the real per-IP limit (429), from a second app', async (t) => {
    const strict = await build(t, { env: { ...ENV, UI_RATE_LIMIT_MAX: '1', REQUEST_DEADLINE_MS: '1500' }, pool });
    const strictOrigin = await listen(strict.app);
    servers.push(strictOrigin);
    const other = await context.newPage();
    try {
      await other.goto(`${strictOrigin}/`);
      await ready(other);
      // The page sends the file's bytes as they are, so a photo marked 'hang' makes the worker hang.
      await other.setInputFiles('#file', { ...input, buffer: withFault(input.buffer, 'hang') });
      await other.locator('#submit').click();
      await settled(other, 'error');
      t.match(await other.locator('#status').innerText(), /took too long/, '504 from the deadline');

      await other.locator('#submit').click();
      await other.locator('#status[data-kind="error"]', { hasText: 'Too many' }).waitFor({ timeout: 30_000 });
      const first = await other.locator('#status').innerText();
      t.match(first, /Too many cartoons.*Try again in \d+ seconds/, '429 says when to retry');
      t.ok(await other.locator('#submit').isDisabled(), 'and the button waits for it');
      await other.waitForTimeout(2100);
      const later = await other.locator('#status').innerText();
      const seconds = (text: string) => Number(/in (\d+) seconds/.exec(text)?.[1]);
      t.ok(seconds(later) < seconds(first), `it counts down (${seconds(first)} s, then ${seconds(later)} s)`);
    } finally {
      await other.close();
      // The hung worker was killed; until its replacement is warm the pool answers 503 NOT_READY.
      await waitUntilReady(pool, 60_000);
    }
  });

  await t.test('the page talked to nobody but the server, and the logs hold no photo', async (t) => {
    t.ok(requests.length > 10, `${requests.length} requests recorded`);
    const origins = new Set(requests.map((r) => (r.url.startsWith('blob:') || r.url.startsWith('data:') ? r.url.slice(0, 5) : new URL(r.url).origin)));
    const strangers = requests.filter((r) => !servers.some((server) => staysWithServer(r.url, server)));
    t.same(strangers, [], 'no request left the servers under test');
    t.comment(`origins seen: ${[...origins].join(', ')}`);
    t.same(cspViolations, [], 'no Content-Security-Policy violation');
    t.same(pageErrors, [], 'no uncaught error in the page');
    const log = logs.text;
    t.match(log, '/ui/cartoonize', 'requests were logged');
    t.notMatch(log, input.name, 'no file name in the logs');
    t.notMatch(log, 'astronaut', 'nothing of the photo’s name in the logs');
  });

  await t.test('a phone-sized screen gets one readable column', async (t) => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true });
    const phoneRequests = recordRequests(phone);
    const p = await phone.newPage();
    try {
      await p.goto(`${stockOrigin}/`);
      await ready(p);
      t.match(await p.locator('#max-size').innerText(), '10 MB', 'the stock upload limit');
      const dropzone = await p.locator('#dropzone').boundingBox();
      t.ok(dropzone !== null && dropzone.y >= 0 && dropzone.y + dropzone.height <= 844, `the upload control is on the first screen (bottom at ${dropzone === null ? '?' : Math.round(dropzone.y + dropzone.height)} of 844 px)`);
      t.ok(await p.locator('.privacy-line').isVisible(), 'with the one-line privacy summary beside it');
      const operator = await p.locator('#operator').innerText();
      t.match(operator, 'Run by Example Toons <Ltd>.', 'the operator, named (and escaped)');
      t.equal(await p.locator('#operator a[href="mailto:privacy@example.org"]').count(), 1, 'a contact');
      t.equal(await p.locator('#operator a[href="https://example.org/privacy"]').innerText(), 'Privacy policy', 'and the policy');
      await p.setInputFiles('#file', input);
      await p.locator('#submit').click();
      await settled(p, 'success');
      const overflow = await p.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth');
      t.equal(overflow, 0, 'no horizontal scrolling');
      const [before, after] = await Promise.all([p.locator('#before').boundingBox(), p.locator('#after').boundingBox()]);
      t.ok(before !== null && after !== null && after.y > before.y + before.height - 1, 'before and after are stacked');
      mkdirSync(ARTIFACTS, { recursive: true });
      await p.screenshot({ path: join(ARTIFACTS, 'web-mobile.png'), fullPage: true });
      t.same(phoneRequests.filter((r) => !staysWithServer(r.url, stockOrigin)), [], 'same origin only');
    } finally {
      await phone.close();
    }
  });

  // Only on request: a normal test run writes nothing outside test/artifacts.
  const forDocs = process.env['SCREENSHOT_FOR_DOCS'] === '1';
  await t.test('docs/web-ui.png', { skip: forDocs ? (input.real ? false : 'needs the astronaut photo in ../shared/images') : 'set SCREENSHOT_FOR_DOCS=1 to refresh it' }, async (t) => {
    const docs = await browser.newContext({ viewport: { width: 1200, height: 900 }, colorScheme: 'light' });
    const p = await docs.newPage();
    try {
      await p.goto(`${stockOrigin}/`);
      await ready(p);
      await p.setInputFiles('#file', input);
      await p.locator('#submit').click();
      await settled(p, 'success');
      mkdirSync(join(ROOT, 'docs'), { recursive: true });
      await p.screenshot({ path: join(ROOT, 'docs', 'web-ui.png') });
      t.pass('wrote docs/web-ui.png');
    } finally {
      await docs.close();
    }
  });
}

/** The style list has arrived from /api/styles (the page is usable). */
function ready(page: Page): Promise<void> {
  return page.locator('#style:not([disabled])').waitFor();
}

/**
 * The upload ended with this kind of status: 'success' once the cartoon is shown (decoded), 'error' with a message.
 * Ending the other way fails at once, with the page's message.
 */
async function settled(page: Page, kind: 'success' | 'error'): Promise<void> {
  const status = page.locator('#status');
  await page.locator('#status[data-kind="success"], #status[data-kind="error"]').waitFor({ timeout: 60_000 });
  const got = await status.getAttribute('data-kind');
  if (got !== kind) throw new Error(`expected ${kind}, the page says (${got}): ${await status.innerText()}`);
}

/** An image element has decoded its picture. */
async function loaded(page: Page, selector: string): Promise<void> {
  await page.locator(`${selector}[src]:not([hidden])`).waitFor();
  await page.locator(selector).evaluate((img: any) => img.decode());
}

async function naturalSize(page: Page, selector: string): Promise<[number, number]> {
  return page.locator(selector).evaluate((img: any) => [img.naturalWidth as number, img.naturalHeight as number]);
}

/** A PNG of random pixels at least `bytes` long (noise does not compress). */
async function noise(bytes: number): Promise<Buffer> {
  const side = Math.ceil(Math.sqrt(bytes / 3)) + 16;
  const raw = Buffer.alloc(side * side * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
  const png = await sharp(raw, { raw: { width: side, height: side, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
  if (png.length <= bytes) throw new Error(`noise PNG too small: ${png.length}`);
  return png;
}
