/**
 * The contract between the main thread and a worker thread: the messages that cross the boundary, and the few pure
 * facts both sides must agree on (output formats, the task guard's flags, which input formats are accepted).
 * Imported on both sides, so it imports neither and has no side effects.
 */

export type OutputFormat = 'jpeg' | 'png' | 'webp' | 'avif';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['jpeg', 'png', 'webp', 'avif'];

/**
 * Encoder quality when a request names none. JPEG 95, as the original service sent; WebP alike. AVIF's scale is
 * not JPEG's: 60 looks as clean as JPEG 95 at about a fifth of its bytes. PNG is lossless (the value is unused).
 */
export const DEFAULT_QUALITY: Readonly<Record<OutputFormat, number>> = { jpeg: 95, webp: 95, avif: 60, png: 100 };

/** Request options a caller may set; validated in the main thread before a task is queued. */
export interface CartoonizeOptions {
  /** Style (model) id, as listed by the registry. */
  style: string;
  format: OutputFormat;
  /** Encoder quality 1..100 for jpeg, webp and avif; ignored for png. */
  quality: number;
  /** Optional cap on the output's long side, in pixels. */
  maxSize?: number | undefined;
  /** Face-aware styles: answer PTOON_NO_FACE instead of a whole-image result when no face is found. */
  requireFace?: boolean | undefined;
  /** 'face': a square avatar around the largest face (face-aware styles; PTOON_NO_FACE without one). */
  crop?: 'face' | undefined;
}

/**
 * Flags of a task's guard: one Int32 in a SharedArrayBuffer that the pool and the worker change only atomically, so
 * that a deadline never terminates a thread inside native code (the protocol: workers/native-guard.ts).
 */
export const GUARD = { STARTED: 1, NATIVE: 2, CANCELLED: 4, KILLED: 8, DONE: 16 } as const;

export interface CartoonizeTask extends CartoonizeOptions {
  /** The encoded upload. Transferred, never cloned: the sender's copy is detached after `run`. */
  input: ArrayBuffer;
  /** Shared, not transferred: the task's guard (Int32 0: GUARD flags; Int32 1: native calls entered). */
  guard: SharedArrayBuffer;
}

/** Milliseconds spent in each stage inside the worker. */
export interface StageTimings {
  decode: number;
  detect?: number;
  /** The whole-image pass: pack + run + unpack (and a little bookkeeping). */
  infer: number;
  /** Its parts: pixels into the model's tensor, the model's run, its output back into pixels. */
  pack?: number;
  run?: number;
  unpack?: number;
  head?: number;
  encode: number;
}

export interface CartoonizeSuccess {
  ok: true;
  /** The encoded result, transferred back. */
  output: ArrayBuffer;
  mime: string;
  width: number;
  height: number;
  faces: number;
  timings: StageTimings;
}

/**
 * Expected failures caused by the input (not by the service) are returned, not thrown, so that their
 * code survives the thread boundary intact. They are the public codes, rows of errors.ts's table (checked there at
 * compile time); the main thread builds the coded error from the code.
 */
export type InputErrorCode =
  | 'PTOON_UNSUPPORTED_MEDIA'
  | 'PTOON_BAD_IMAGE'
  | 'PTOON_TOO_MANY_PIXELS'
  | 'PTOON_NO_FACE'
  | 'PTOON_BAD_OPTION'
  | 'PTOON_UNKNOWN_STYLE';

export interface CartoonizeFailure {
  ok: false;
  code: InputErrorCode;
  message: string;
}

export type CartoonizeReply = CartoonizeSuccess | CartoonizeFailure;

/** The limits and thread settings every worker applies; part of the pool's settings (PoolSettings, config.ts). */
export interface WorkerSettings {
  /** onnxruntime intra-op threads per session (parallelism comes from workers). */
  intraOpThreads: number;
  interOpThreads: number;
  /** ORT thread-pool spin-waiting; off by default so idle workers don't burn CPU. */
  spinning: boolean;
  /**
   * Niceness each worker thread gives itself at start (and so its onnxruntime threads, which it creates): the main
   * thread keeps the process's own, so it gets a core first when both want one. 0 leaves the thread as it is.
   */
  workerNice: number;
  /** Decoded pixel budget per image (width x height after orientation), checked from the header before decoding. */
  maxInputPixels: number;
  /** Longest output side a request may ask for, and the cap when it asks for none. */
  maxOutputSide: number;
  /** Face-aware styles: at most this many faces per image get the head model, largest first (0: no face path). */
  maxFaces: number;
  /** Faces whose box is smaller than this (longer side, pixels at model size) keep the whole-image result. */
  minFaceSize: number;
}

/** What every worker receives at start (Piscina `workerData`). */
export interface WorkerConfig extends WorkerSettings {
  /** Validated manifests of the models to load, with absolute ONNX paths. */
  models: import('./models/manifest.js').ModelManifest[];
}

// ---- The workers' environment ----

/**
 * onnxruntime-node has telemetry of its own on Linux: it keeps a SQLite store under ~/.cache/Microsoft, writes
 * /tmp/mat-debug-<pid>.log and may upload events. A service that writes nothing to disk and calls no one turns it
 * off. The native library reads ORT_DISABLE_TELEMETRY from the C environment when it creates its environment (the
 * first session). A worker thread's process.env is a copy that never reaches the C environment, so the main thread
 * calls this before it starts any worker (pool/inference-pool.ts), without loading onnxruntime itself; workers/ort.ts
 * calls it too, for the model tools that load onnxruntime in the main thread. An operator's own value is kept.
 */
export function disableOrtTelemetry(env: NodeJS.ProcessEnv = process.env): void {
  env['ORT_DISABLE_TELEMETRY'] ??= '1';
}

// ---- Worker notices ----

/**
 * Out-of-band notices a worker posts on its parent port (Piscina re-emits them as the pool's 'message' event).
 * Piscina marks its first workers ready before their init has run, so the pool learns readiness from these.
 */
export type WorkerNotice =
  | { privatoon: true; type: 'ready'; threadId: number }
  | { privatoon: true; type: 'init-failed'; threadId: number; message: string; manifest?: ManifestProblem | undefined };

/** A model that failed a worker's start-up checks: the fields of its ManifestError (models/manifest.ts). */
export interface ManifestProblem {
  file: string;
  field: string;
  problem: string;
}

export function isWorkerNotice(value: unknown): value is WorkerNotice {
  return typeof value === 'object' && value !== null && (value as { privatoon?: unknown }).privatoon === true;
}

// ---- Input formats ----

/**
 * Format sniffing from the first bytes, before any decoder sees the upload. The allow-list is JPEG, PNG and WebP:
 * everything else (SVG above all: librsvg is a large attack surface, and SVG can reference other resources) is
 * refused here, whatever the declared Content-Type says.
 */

export type InputFormat = 'jpeg' | 'png' | 'webp';

export type SniffResult = { ok: true; format: InputFormat } | { ok: false; what: string };

const startsWith = (bytes: Uint8Array, offset: number, signature: readonly number[]) =>
  bytes.length >= offset + signature.length && signature.every((b, i) => bytes[offset + i] === b);

const ascii = (text: string) => [...text].map((c) => c.charCodeAt(0));

/** Well-known formats we refuse, named so the error message can say what was sent. */
const REFUSED: ReadonlyArray<[string, (b: Uint8Array) => boolean]> = [
  ['GIF', (b) => startsWith(b, 0, ascii('GIF8'))],
  ['TIFF', (b) => startsWith(b, 0, [0x49, 0x49, 0x2a, 0x00]) || startsWith(b, 0, [0x4d, 0x4d, 0x00, 0x2a])],
  ['BMP', (b) => startsWith(b, 0, ascii('BM'))],
  ['HEIF/AVIF', (b) => startsWith(b, 4, ascii('ftyp'))],
  ['PDF', (b) => startsWith(b, 0, ascii('%PDF'))],
  ['SVG', (b) => /^\s*(<\?xml|<svg|<!DOCTYPE svg)/i.test(new TextDecoder().decode(b.subarray(0, 256)))],
];

export function sniffFormat(bytes: Uint8Array): SniffResult {
  if (startsWith(bytes, 0, [0xff, 0xd8, 0xff])) return { ok: true, format: 'jpeg' };
  if (startsWith(bytes, 0, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return { ok: true, format: 'png' };
  if (startsWith(bytes, 0, ascii('RIFF')) && startsWith(bytes, 8, ascii('WEBP'))) return { ok: true, format: 'webp' };
  const refused = REFUSED.find(([, test]) => test(bytes));
  return { ok: false, what: refused ? refused[0] : bytes.length === 0 ? 'an empty file' : 'an unrecognised format' };
}
