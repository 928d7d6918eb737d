// privatoon web page: pick a portrait, send it once to POST /ui/cartoonize, show and offer the cartoon.
//
// Privacy rules this file keeps: the photo leaves the browser only in that one same-origin upload; nothing is
// written to cookies, localStorage, sessionStorage or IndexedDB; no request goes anywhere but this server; every
// object URL is revoked as soon as it is replaced, and all of them when the page is hidden.

const ACCEPTED_TYPES = ['image/jpeg', 'image/png', 'image/webp'];
const DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024;
const EXTENSIONS = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp' };
const FALLBACK_STYLE = { id: 'toon', title: 'Toon (built-in)' };

const $ = (id) => {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`missing #${id}`);
  return el;
};

const ui = {
  work: $('work'),
  form: /** @type {HTMLFormElement} */ ($('form')),
  file: /** @type {HTMLInputElement} */ ($('file')),
  dropzone: $('dropzone'),
  dropzoneAction: $('dropzone-action'),
  fileName: $('file-name'),
  maxSize: $('max-size'),
  style: /** @type {HTMLSelectElement} */ ($('style')),
  styleLicence: $('style-licence'),
  format: /** @type {HTMLSelectElement} */ ($('format')),
  submit: /** @type {HTMLButtonElement} */ ($('submit')),
  cancel: /** @type {HTMLButtonElement} */ ($('cancel')),
  statusBox: $('status-box'),
  status: $('status'),
  before: /** @type {HTMLImageElement} */ ($('before')),
  beforeFrame: $('before-frame'),
  beforeEmpty: $('before-empty'),
  after: /** @type {HTMLImageElement} */ ($('after')),
  afterFrame: $('after-frame'),
  afterEmpty: $('after-empty'),
  resultActions: $('result-actions'),
  download: /** @type {HTMLAnchorElement} */ ($('download')),
};

const state = {
  /** @type {File | null} */ file: null,
  /** The chosen file's type, as the browser named it or as its first bytes tell. */ type: '',
  /** @type {string | null} */ beforeUrl: null,
  /** @type {string | null} */ afterUrl: null,
  /** @type {AbortController | null} */ controller: null,
  stylesReady: false,
  /** After a 429: when a retry can work (ms since the epoch), and the timer counting down to it. */ retryAt: 0,
  /** @type {ReturnType<typeof setInterval> | null} */ countdown: null,
};

/** The upload limit GET /api/styles announced (kept on the form), else the service's default. */
function maxUploadBytes() {
  const announced = Number(ui.form.dataset.maxUploadBytes);
  return Number.isSafeInteger(announced) && announced > 0 ? announced : DEFAULT_MAX_UPLOAD_BYTES;
}

function formatBytes(bytes) {
  if (bytes >= 1024 * 1024) {
    const mb = bytes / (1024 * 1024);
    return `${Number.isInteger(mb) ? mb : mb.toFixed(1)} MB`;
  }
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${bytes} bytes`;
}

function formatWait(seconds) {
  if (seconds <= 1) return 'a second';
  if (seconds < 90) return `${seconds} seconds`;
  return `about ${Math.round(seconds / 60)} minutes`;
}

/** Retry-After is either delay-seconds or an HTTP date; answers whole seconds, or null when absent or unreadable. */
function retryAfterSeconds(headers) {
  const value = headers?.get('retry-after');
  if (value === null || value === undefined || value.trim() === '') return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  if (Number.isNaN(date)) return null;
  return Math.max(1, Math.ceil((date - Date.now()) / 1000));
}

// ---- status line --------------------------------------------------------------------------------------------------

/** kind: 'info' | 'busy' | 'success' | 'error' */
function setStatus(kind, text) {
  ui.status.textContent = text;
  ui.status.dataset.kind = kind;
  ui.statusBox.hidden = kind !== 'busy';
}

function setBusy(busy) {
  ui.work.setAttribute('aria-busy', busy ? 'true' : 'false');
  ui.afterFrame.classList.toggle('is-working', busy);
  ui.afterEmpty.textContent = busy ? 'Making your cartoon…' : 'The cartoon will appear here';
  ui.form.classList.toggle('is-busy', busy);
  ui.submit.disabled = busy || !canSubmit();
  ui.cancel.hidden = !busy;
  ui.file.disabled = busy;
  ui.style.disabled = busy || !state.stylesReady;
  ui.format.disabled = busy;
  ui.dropzone.classList.toggle('is-disabled', busy);
}

function canSubmit() {
  return state.file !== null && state.stylesReady && state.controller === null && Date.now() >= state.retryAt;
}

// ---- after a 429: count down to when a retry can work --------------------------------------------------------------

function formatCountdown(seconds) {
  if (seconds < 60) return seconds === 1 ? '1 second' : `${seconds} seconds`;
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
}

function stopCountdown() {
  if (state.countdown !== null) clearInterval(state.countdown);
  state.countdown = null;
  state.retryAt = 0;
}

/** Shows the wait, one second at a time, with the button off; then says a retry can work and turns it back on. */
function startCountdown(seconds) {
  stopCountdown();
  state.retryAt = Date.now() + seconds * 1000;
  const tick = () => {
    const left = Math.ceil((state.retryAt - Date.now()) / 1000);
    if (left <= 0) {
      stopCountdown();
      setStatus('info', 'You can try again now.');
      setBusy(state.controller !== null);
      return;
    }
    setStatus('error', `Too many cartoons in a short time from your connection. Try again in ${formatCountdown(left)}.`);
  };
  tick();
  state.countdown = setInterval(tick, 1000);
}

// ---- object URLs --------------------------------------------------------------------------------------------------

function setBefore(file) {
  if (state.beforeUrl !== null) URL.revokeObjectURL(state.beforeUrl);
  state.beforeUrl = file === null ? null : URL.createObjectURL(file);
  ui.beforeFrame.classList.toggle('is-empty', state.beforeUrl === null);
  ui.beforeEmpty.textContent = 'No photo chosen yet';
  if (state.beforeUrl === null) {
    ui.before.removeAttribute('src');
    ui.before.hidden = true;
    ui.beforeEmpty.hidden = false;
  } else {
    ui.before.src = state.beforeUrl;
    ui.before.alt = 'Your photo, as chosen';
    ui.before.hidden = false;
    ui.beforeEmpty.hidden = true;
  }
}

// A file the browser cannot draw keeps a note instead of a broken-image icon; the server still decides about it.
ui.before.addEventListener('error', () => {
  if (state.beforeUrl === null) return;
  ui.before.hidden = true;
  ui.beforeEmpty.textContent = 'No preview: this browser cannot show this file.';
  ui.beforeEmpty.hidden = false;
});

function setAfter(blob) {
  if (state.afterUrl !== null) URL.revokeObjectURL(state.afterUrl);
  state.afterUrl = blob === null ? null : URL.createObjectURL(blob);
  ui.afterFrame.classList.toggle('is-empty', state.afterUrl === null);
  if (state.afterUrl === null) {
    ui.after.removeAttribute('src');
    ui.after.hidden = true;
    ui.afterEmpty.hidden = false;
    ui.download.removeAttribute('href');
    ui.resultActions.hidden = true;
  } else {
    ui.after.src = state.afterUrl;
    ui.after.alt = 'The cartoon made from your photo';
    ui.after.hidden = false;
    ui.afterEmpty.hidden = true;
    ui.download.href = state.afterUrl;
    // A neutral name: never derived from the upload's file name.
    ui.download.download = `cartoon.${EXTENSIONS[blob.type] ?? 'jpg'}`;
    ui.resultActions.hidden = false;
  }
}

function forgetEverything() {
  state.controller?.abort();
  setBefore(null);
  setAfter(null);
  state.file = null;
  ui.file.value = '';
  ui.fileName.hidden = true;
  ui.fileName.textContent = '';
  ui.dropzone.classList.remove('has-file');
  ui.dropzoneAction.textContent = 'Choose a photo';
}

// ---- choosing a file ----------------------------------------------------------------------------------------------

/** When the browser names no type (some systems do so for WebP), read the first bytes, locally, to tell. */
async function sniffType(file) {
  const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'image/jpeg';
  if (head[0] === 0x89 && head[1] === 0x50 && head[2] === 0x4e && head[3] === 0x47) return 'image/png';
  const ascii = (from, to) => String.fromCharCode(...head.subarray(from, to));
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'image/webp';
  return '';
}

/** A fast, local answer for the obvious mistakes; the server checks everything again and is the authority. */
async function checkFile(file) {
  let type = file.type;
  if (!ACCEPTED_TYPES.includes(type)) {
    type = type === '' ? await sniffType(file) : '';
    if (type === '') return { problem: 'This file is not a photo the service can read: send a JPEG, PNG or WebP.', type };
  }
  if (file.size === 0) return { problem: 'This file is empty. Choose another photo.', type };
  const limit = maxUploadBytes();
  if (file.size > limit) {
    return { problem: `This photo is too large (${formatBytes(file.size)}): the limit is ${formatBytes(limit)}. Make it smaller and try again.`, type };
  }
  return { problem: null, type };
}

async function chooseFile(file) {
  if (state.controller !== null) return;
  setAfter(null);
  const { problem, type } = await checkFile(file);
  if (problem !== null) {
    forgetEverything();
    setStatus('error', problem);
    setBusy(false);
    return;
  }
  state.file = file;
  state.type = type;
  setBefore(file);
  // The name is shown to the person who chose it, here only; it is never sent (the upload is named "photo").
  ui.fileName.textContent = `${file.name} · ${formatBytes(file.size)}`;
  ui.fileName.hidden = false;
  ui.dropzone.classList.add('has-file');
  ui.dropzoneAction.textContent = 'Choose another photo';
  setStatus('info', 'Photo ready. Choose a style and press “Cartoonize”.');
  setBusy(false);
}

ui.file.addEventListener('change', () => {
  const file = ui.file.files?.[0];
  if (file !== undefined) void chooseFile(file);
});

// Dropping a file anywhere but the drop zone must not make the browser open it.
for (const type of ['dragover', 'drop']) {
  window.addEventListener(type, (event) => event.preventDefault());
}
ui.dropzone.addEventListener('dragenter', (event) => {
  event.preventDefault();
  if (state.controller === null) ui.dropzone.classList.add('is-over');
});
ui.dropzone.addEventListener('dragover', (event) => {
  event.preventDefault();
  if (event.dataTransfer !== null) event.dataTransfer.dropEffect = state.controller === null ? 'copy' : 'none';
});
ui.dropzone.addEventListener('dragleave', (event) => {
  if (!(event.relatedTarget instanceof Node) || !ui.dropzone.contains(event.relatedTarget)) ui.dropzone.classList.remove('is-over');
});
ui.dropzone.addEventListener('drop', (event) => {
  event.preventDefault();
  ui.dropzone.classList.remove('is-over');
  const files = event.dataTransfer?.files;
  if (files === undefined || files.length === 0) return;
  if (files.length > 1) {
    setStatus('error', 'Drop one photo at a time.');
    return;
  }
  void chooseFile(files[0]);
});

// ---- styles -------------------------------------------------------------------------------------------------------

function showLicence() {
  const licence = ui.style.selectedOptions[0]?.dataset.licence;
  ui.styleLicence.textContent = licence === undefined ? '' : `Model licence: ${licence}`;
  ui.styleLicence.hidden = licence === undefined;
}
ui.style.addEventListener('change', showLicence);

/** Reads GET /api/styles: { styles: [{ id, title, licence? }], default?, formats?, limits?: { maxUploadBytes? } }; ids as plain strings too. */
function parseStyles(body) {
  const list = Array.isArray(body) ? body : Array.isArray(body?.styles) ? body.styles : [];
  const styles = list
    .map((s) => (typeof s === 'string' ? { id: s, title: s } : { id: s?.id, title: s?.title ?? s?.name ?? s?.id, licence: s?.licence }))
    .filter((s) => typeof s.id === 'string' && s.id !== '');
  const formats = Array.isArray(body?.formats) ? body.formats.filter((f) => typeof f === 'string') : null;
  const limit = body?.limits?.maxUploadBytes;
  return {
    styles,
    preferred: typeof body?.default === 'string' ? body.default : FALLBACK_STYLE.id,
    formats,
    maxUploadBytes: Number.isSafeInteger(limit) && limit > 0 ? limit : null,
  };
}

async function loadStyles() {
  let menu = { styles: [], preferred: FALLBACK_STYLE.id, formats: null, maxUploadBytes: null };
  try {
    const response = await fetch('/api/styles', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (response.ok) menu = parseStyles(await response.json());
  } catch {
    // Offline or the server is restarting: fall back to the built-in style, the upload will tell the truth.
  }
  const fellBack = menu.styles.length === 0;
  const styles = fellBack ? [FALLBACK_STYLE] : menu.styles;
  ui.style.replaceChildren(
    ...styles.map((s) => {
      const option = document.createElement('option');
      const title = typeof s.title === 'string' && s.title !== '' ? s.title : s.id;
      option.value = s.id;
      // "Toon (built-in: guided-filter smoothing, …)" reads as "Toon"; the whole title stays as the tooltip.
      option.textContent = title.replace(/\s*\(.*\)\s*$/, '') || title;
      option.title = title;
      // A learned model's licence and provenance, shown under the picker while it is chosen.
      if (typeof s.licence === 'string' && s.licence !== '') option.dataset.licence = s.licence;
      return option;
    }),
  );
  ui.style.value = (styles.find((s) => s.id === menu.preferred) ?? styles[0]).id;
  showLicence();
  // Offer only the formats this server makes (jpeg stays: it is every server's default).
  if (menu.formats !== null) {
    for (const option of [...ui.format.options]) {
      if (option.value !== 'jpeg' && !menu.formats.includes(option.value)) option.remove();
    }
  }
  if (menu.maxUploadBytes !== null) {
    ui.form.dataset.maxUploadBytes = String(menu.maxUploadBytes);
    ui.maxSize.textContent = formatBytes(menu.maxUploadBytes);
  }
  state.stylesReady = true;
  if (fellBack && ui.status.textContent === '') setStatus('info', 'Could not load the list of styles; the built-in style will be used.');
  setBusy(state.controller !== null);
}

// ---- errors -------------------------------------------------------------------------------------------------------

/** The message for a failed upload, from the status, the problem body ({ type, title, status, detail, code, retryAfter }) and Retry-After. */
function describeError(status, body, headers) {
  const code = typeof body?.code === 'string' ? body.code : '';
  const bodyWait = Number.isSafeInteger(body?.retryAfter) && body.retryAfter > 0 ? body.retryAfter : null;
  const wait = retryAfterSeconds(headers) ?? bodyWait;
  switch (status) {
    case 400:
      if (code === 'PTOON_UNKNOWN_STYLE') return 'That style is no longer available. Reload the page to see the current styles.';
      return 'The server could not use this request. Reload the page and try again.';
    case 401:
      return 'This server only makes cartoons for callers with an API key, so this page cannot be used here.';
    case 403:
      return 'The server refused the upload because it did not come from its own page. Reload the page and try again.';
    case 413:
      if (code === 'PTOON_TOO_MANY_PIXELS') return 'This photo has too many pixels for the service. Make it smaller (for example, under 4000 × 4000) and try again.';
      return `This photo is too large: the limit is ${formatBytes(announcedLimit(body) ?? maxUploadBytes())}. Make it smaller and try again.`;
    case 415:
      return 'This file is not a photo the service can read: send a JPEG, PNG or WebP.';
    case 422:
      if (code === 'PTOON_NO_FACE') return 'No face was found in this photo. Try a clearer portrait, facing the camera.';
      return 'This image could not be read: it may be damaged or incomplete. Try another photo.';
    case 429:
      return wait === null
        ? 'Too many cartoons in a short time from your connection. Wait a minute and try again.'
        : `Too many cartoons in a short time from your connection. Try again in ${formatWait(wait)}.`;
    case 503:
      if (code === 'PTOON_NOT_READY') return 'The service is starting or restarting. Try again in a few seconds.';
      return wait === null
        ? 'The service is busy right now. Try again in a little while.'
        : `The service is busy right now. Try again in ${formatWait(wait)}.`;
    case 504:
      return 'Making the cartoon took too long and was stopped. Try again, or try a smaller photo.';
    default:
      return `Something went wrong on the server (error ${status}). Try again in a moment.`;
  }
}

/** The limit a 413 names ("larger than 1048576 bytes"): the server's word beats what the page was told. */
function announcedLimit(body) {
  const match = /(\d+) bytes/.exec(typeof body?.message === 'string' ? body.message : '');
  const bytes = match === null ? NaN : Number(match[1]);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) return null;
  ui.form.dataset.maxUploadBytes = String(bytes);
  ui.maxSize.textContent = formatBytes(bytes);
  return bytes;
}

async function readErrorBody(response) {
  if (!(response.headers.get('content-type') ?? '').includes('json')) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// ---- the upload ---------------------------------------------------------------------------------------------------

async function cartoonize() {
  if (!canSubmit() || state.file === null) return;
  const file = state.file;
  const controller = new AbortController();
  state.controller = controller;
  setAfter(null);
  setBusy(true);
  setStatus('busy', 'Uploading your photo and making the cartoon…');

  const body = new FormData();
  body.append('style', ui.style.value);
  body.append('format', ui.format.value);
  // Last, after the options, so the server reads them before the image streams in. Neutral name: the real one stays here.
  body.append('image', new Blob([file], { type: state.type }), `photo.${EXTENSIONS[state.type] ?? 'jpg'}`);

  try {
    const response = await fetch('/ui/cartoonize', {
      method: 'POST',
      body,
      credentials: 'same-origin',
      cache: 'no-store',
      referrerPolicy: 'no-referrer',
      signal: controller.signal,
    });
    const type = response.headers.get('content-type') ?? '';
    if (!response.ok) {
      const errorBody = await readErrorBody(response);
      const wait = retryAfterSeconds(response.headers) ?? (Number.isSafeInteger(errorBody?.retryAfter) ? errorBody.retryAfter : null);
      if (response.status === 429 && wait !== null && wait > 0) startCountdown(wait);
      else setStatus('error', describeError(response.status, errorBody, response.headers));
      return;
    }
    if (!type.startsWith('image/')) {
      setStatus('error', 'The server answered with something that is not an image. Try again in a moment.');
      return;
    }
    setStatus('busy', 'Receiving the cartoon…');
    const blob = await response.blob();
    if (state.file !== file) return; // replaced meanwhile
    setAfter(blob.type === '' ? new Blob([blob], { type: type.split(';')[0] }) : blob);
    await ui.after.decode().catch(() => undefined);
    setStatus('success', 'Done. Here is your cartoon: download it to keep it, nothing is kept on the server.');
  } catch {
    if (controller.signal.aborted) {
      setStatus('info', 'Cancelled.');
    } else {
      setStatus('error', 'Could not reach the server. Check your connection and try again.');
    }
  } finally {
    if (state.controller === controller) state.controller = null;
    // The button that had the focus was disabled or hidden meanwhile: give keyboard users a place to continue from.
    const lost = document.activeElement === null || document.activeElement === document.body || document.activeElement === ui.cancel;
    setBusy(false);
    if (lost && !ui.submit.disabled) ui.submit.focus({ preventScroll: true });
  }
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  void cartoonize();
});
ui.cancel.addEventListener('click', () => state.controller?.abort());

// ---- leaving the page ---------------------------------------------------------------------------------------------

// The photo and the cartoon live only in this tab: when it is hidden for good (closed, navigated away, frozen in the
// back/forward cache), cancel any upload and free both object URLs.
window.addEventListener('pagehide', () => {
  stopCountdown();
  forgetEverything();
  setStatus('info', '');
});
window.addEventListener('pageshow', (event) => {
  if (event.persisted) setBusy(false);
});

// ---- start --------------------------------------------------------------------------------------------------------

ui.maxSize.textContent = formatBytes(maxUploadBytes());
setBusy(false);
void loadStyles();
