/**
 * The inference pool, main-thread side: a Piscina pool of worker threads behind a bounded admission queue.
 *
 * Why an admission queue of our own in front of Piscina's: we must know, per task, whether it is still waiting or
 * already running. A waiting task whose client went away is simply dropped; a running one is left to finish
 * (aborting it in Piscina terminates the worker and reloads every model). Tasks are handed to Piscina only when a
 * worker is free, so Piscina's own queue stays empty.
 *
 * Deadlines. The caller gets 504 at the deadline, always; the running task is then cancelled through its guard
 * (native-guard.ts) and stops at its next native call (`deadlineOverruns`). Its thread is never terminated inside
 * native code (an onnxruntime run, a libvips decode): that aborts the whole process. So an onnxruntime run under way
 * is left to finish and its result is wiped; the worker stays counted busy meanwhile, so capacity and Retry-After
 * stay honest. Native runs are bounded by the pixel limits and sharp's timeout, so an overrun ends on its own. Only
 * a task found still running later in JavaScript (a bug, a test's hang) has its thread terminated and replaced
 * (`deadlineKills`).
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { loadManifests, pinModels } from '../models/registry.js';
import { ManifestError, type ModelManifest } from '../models/manifest.js';
import { moduleFile } from '../paths.js';
import type { PoolSettings } from '../config.js';
import { DEFAULT_QUALITY, GUARD, disableOrtTelemetry, isWorkerNotice, type CartoonizeOptions, type CartoonizeReply, type CartoonizeSuccess, type CartoonizeTask, type WorkerConfig, type WorkerNotice } from '../contract.js';
import { AbortedError, BusyError, DeadlineError, inputError, NotReadyError, UnknownStyleError, WorkerFailedError } from '../errors.js';
import { workersKeepDefaultHeapSizing } from './worker-heap.js';
import { isPoolBacked, wipeAndFree } from '../wipe.js';

/** Start-up options that are not settings of the service. */
export interface PoolStartOptions {
  /**
   * The module each worker thread runs (Piscina's `filename`); default workers/entry. Its default export must be (a
   * Promise of) the task handler, answering as workers/entry does. Code only, no setting reaches it: tests start the
   * pool on a wrapper of the real worker that injects faults (test/fixtures/fault-worker.ts).
   */
  workerFile?: URL | undefined;
}

/** A request's options as asked: style and quality may be left to the pool's defaults (`withDefaults`). */
export type AskedOptions = Omit<CartoonizeOptions, 'style' | 'quality'> & { style?: string | undefined; quality?: number | undefined };

/** The style served to requests that name none, where this pool has it: the project's own built-in model. */
const PREFERRED_DEFAULT_STYLE = 'toon';

/** The option defaults of a pool (InferencePool.withDefaults); apart so that stand-in pools in tests apply the same rule. */
export function withDefaults(pool: Pick<InferencePool, 'defaultStyle' | 'hasStyle'>, asked: AskedOptions): CartoonizeOptions {
  const style = asked.style ?? pool.defaultStyle;
  if (!pool.hasStyle(style)) throw new UnknownStyleError(style);
  return { ...asked, style, quality: asked.quality ?? DEFAULT_QUALITY[asked.format] };
}

export interface StyleInfo {
  id: string;
  title: string;
  faceAware: boolean;
  /** The model's licence, where its manifest states one. */
  licence?: string | undefined;
}

export interface RunControl {
  /** The client went away: drop the task if it is still waiting, discard its result if it is running. */
  signal?: AbortSignal | undefined;
  /** Hard bound on queue + run time; a task still running then is killed (its worker is replaced). */
  deadlineMs?: number | undefined;
}

export interface RunResult extends CartoonizeSuccess {
  /** Milliseconds spent waiting for a worker. */
  queueMs: number;
}

export interface PoolStats {
  workers: number;
  readyWorkers: number;
  busy: number;
  queued: number;
  maxQueue: number;
  completed: number;
  failed: number;
  workerCrashes: number;
  rejectedBusy: number;
  abortedQueued: number;
  /** Deadlines that found their task running: answered 504, the task cancelled at its next native call. */
  deadlineOverruns: number;
  /** Of those, tasks still running later in JavaScript (a hang): their worker was terminated and replaced. */
  deadlineKills: number;
}

interface Waiting {
  task: CartoonizeTask;
  resolve: (result: RunResult) => void;
  reject: (err: Error) => void;
  enqueuedAt: number;
  control: RunControl;
  /** Aborts the Piscina task: used only by the deadline, and only when the guard says it is safe. */
  killer: AbortController;
  /** The task's guard, as the pool sees it (see native-guard.ts). */
  guard: Int32Array;
  /** The deadline stopped (cancelled, maybe killed) the running task: whatever the worker answers is dropped. */
  stopped: boolean;
  /** Stops listening to the client's signal (once the entry is settled). */
  detachClient: () => void;
  /** Stops the deadline: only once the task has left the queue unrun, or its worker is done with it. */
  clearDeadline: () => void;
  settled: boolean;
}

/** How often a task past its deadline is checked for being stuck in JavaScript (two checks in a row), where its thread may be ended. */
const KILL_CHECK_MS = 500;
/** How often `destroy` looks whether a cancelled task has left its native call. */
const NATIVE_POLL_MS = 10;

/** Seconds a busy client is told to wait when we have no timing yet. */
const DEFAULT_RETRY_AFTER_S = 1;
const MAX_RETRY_AFTER_S = 60;

export class InferencePool extends EventEmitter {
  readonly styles: readonly StyleInfo[];
  /** The style a request that names none gets: `toon` where it is served, else the first style found. */
  readonly defaultStyle: string;
  readonly workers: number;
  readonly maxQueue: number;
  readonly threadSettings: { workers: number; intraOpThreads: number; interOpThreads: number; spinning: boolean };

  private readonly piscina: Piscina;
  private readonly waiting: Waiting[] = [];
  /** Tasks handed to a worker and not yet answered by it. */
  private readonly running = new Set<Waiting>();
  private readonly readyThreads = new Set<number>();
  /**
   * Threads that have finished starting, ready or not (an init failure): the others are still loading modules and
   * opening sessions, native code that must not be terminated either (close and destroy wait for them).
   */
  private readonly startedThreads = new Set<number>();
  private busy = 0;
  private closing = false;
  private avgRunMs = 0;
  private counters = { completed: 0, failed: 0, workerCrashes: 0, rejectedBusy: 0, abortedQueued: 0, deadlineOverruns: 0, deadlineKills: 0 };

  private constructor(piscina: Piscina, styles: StyleInfo[], settings: InferencePool['threadSettings'], maxQueue: number) {
    super();
    this.piscina = piscina;
    this.styles = styles;
    this.defaultStyle = styles.some((s) => s.id === PREFERRED_DEFAULT_STYLE) ? PREFERRED_DEFAULT_STYLE : styles[0]!.id;
    this.workers = settings.workers;
    this.threadSettings = settings;
    this.maxQueue = maxQueue;
  }

  /**
   * Validates every manifest and pins its model's bytes, starts the workers and resolves once each has opened and
   * checked its sessions (workers/model-check.ts) and run a warm-up inference. Rejects with the first model or worker
   * error; a bad model's is the ManifestError naming the file and field, once, however many workers found it.
   */
  static async start(settings: PoolSettings, options: PoolStartOptions = {}): Promise<InferencePool> {
    const manifests = await loadManifests(settings.modelsDirs);
    if (!manifests.some((m) => m.role === 'whole')) {
      throw new Error(`No style found in ${settings.modelsDirs.join(', ')}: at least one manifest with role "whole" is needed`);
    }
    await pinModels(manifests);

    const { workers, intraOpThreads, interOpThreads, spinning, workerNice, maxQueue, maxInputPixels, maxOutputSide, maxFaces, minFaceSize } = settings;
    const workerData: WorkerConfig = {
      models: manifests,
      intraOpThreads,
      interOpThreads,
      spinning,
      workerNice,
      maxInputPixels,
      maxOutputSide,
      maxFaces,
      minFaceSize,
    };
    // Before the first worker starts: they inherit the process's environment, where onnxruntime will look, and V8's
    // flags, where the main thread's heap floor must not reach them.
    disableOrtTelemetry();
    workersKeepDefaultHeapSizing();
    const piscina = new Piscina({
      filename: options.workerFile?.href ?? moduleFile('workers/entry'),
      workerData,
      // Every worker holds its own sessions: keep exactly `workers` of them, never idle-reaped and re-created.
      minThreads: workers,
      maxThreads: workers,
      idleTimeout: Number.MAX_SAFE_INTEGER,
      // We dispatch only to free workers (see `pump`); this bound is a safety net, not the queue.
      maxQueue: Math.max(1, workers),
      concurrentTasksPerWorker: 1,
    });
    const styles = manifests
      .filter((m) => m.role === 'whole')
      .map((m: ModelManifest) => ({ id: m.id, title: m.title, faceAware: m.head !== undefined && maxFaces > 0, licence: m.licence }));
    const pool = new InferencePool(piscina, styles, { workers, intraOpThreads, interOpThreads, spinning }, maxQueue);
    await pool.waitUntilWarm();
    return pool;
  }

  /**
   * Resolves when every worker has warmed up; rejects (and closes the pool) if a worker fails to initialise, with
   * the first failure a worker reported: a bad model's ManifestError, said once however many workers found it.
   *
   * A failed start ends the workers only once each has reported (ready or failed) or exited: one still opening a
   * session or running its warm-up is inside onnxruntime, and terminating a thread there aborts the whole process.
   */
  private waitUntilWarm(): Promise<void> {
    return new Promise((resolve, reject) => {
      // Every thread seen, with its id (Node resets a thread's id to -1 at exit), and those that reported or exited.
      const threads = new Map<Worker, number>();
      const reported = new Set<number>();
      const exited = new Set<Worker>();
      // What a worker said went wrong; and what Piscina says of a worker that died, often only the echo of the former.
      let reportedFailure: Error | undefined;
      let crash: Error | undefined;
      let done = false;
      const settle = () => {
        if (done) return;
        for (const thread of this.piscina.threads) {
          if (threads.has(thread)) continue;
          threads.set(thread, thread.threadId);
          thread.once('exit', () => {
            exited.add(thread);
            settle();
          });
        }
        const failure = reportedFailure ?? crash;
        if (failure !== undefined) {
          // Node delivers a thread's messages before its 'exit': an exited thread has said all it will say.
          if ([...threads].some(([thread, id]) => !reported.has(id) && !exited.has(thread))) return;
          done = true;
          stopWaiting();
          void this.piscina.destroy();
          reject(failure);
        } else if (this.readyThreads.size >= this.workers) {
          done = true;
          stopWaiting();
          // Piscina reports worker errors that no task was waiting on here; an 'error' event nobody listens to
          // would end the process, so it is passed on only to a listener (the server logs it).
          this.piscina.on('error', (err: Error) => {
            if (this.listenerCount('error') > 0) this.emit('error', err);
          });
          resolve();
        }
      };
      const onMessage = (message: unknown) => {
        if (!isWorkerNotice(message)) return;
        reported.add(message.threadId);
        if (message.type === 'init-failed') reportedFailure ??= initError(message);
        settle();
      };
      const onError = (err: Error) => {
        crash ??= err;
        settle();
      };
      const stopWaiting = () => {
        this.piscina.off('message', onMessage);
        this.piscina.off('error', onError);
      };
      // Registered before any worker can speak: readiness of replacement workers is tracked for the pool's life.
      this.piscina.on('message', (message: unknown) => {
        if (isWorkerNotice(message)) this.startedThreads.add(message.threadId);
        if (isWorkerNotice(message) && message.type === 'ready') {
          this.readyThreads.add(message.threadId);
          this.emit('worker-ready', message.threadId);
        }
        // A replacement worker that cannot load its models (a file changed or vanished since start-up): Piscina
        // stops replacing it, so the pool runs short and /readyz stays 503. Said loudly, for the operator.
        if (isWorkerNotice(message) && message.type === 'init-failed' && this.readyThreads.size > 0) {
          this.emit('worker-init-failed', message.message);
        }
      });
      this.piscina.on('workerDestroy', (worker: { id: number }) => {
        // A terminated worker still reports its id here; one that exited on its own reads -1 (Node resets a thread's
        // id at exit). So keep exactly the ids of the threads still alive.
        this.readyThreads.delete(worker.id);
        this.startedThreads.delete(worker.id);
        const alive = new Set(this.piscina.threads.map((thread) => thread.threadId));
        for (const id of this.readyThreads) if (!alive.has(id)) this.readyThreads.delete(id);
        for (const id of this.startedThreads) if (!alive.has(id)) this.startedThreads.delete(id);
      });
      this.piscina.on('message', onMessage);
      this.piscina.on('error', onError);
      settle();
    });
  }

  /**
   * True until the pool starts closing. Tasks are accepted while a crashed worker is being replaced: they wait for it
   * in the queue like any other, so one reload does not turn every request away.
   */
  get accepting(): boolean {
    return !this.closing;
  }

  /** True while every worker holds warm sessions and the pool is not shutting down (readiness for a balancer). */
  get ready(): boolean {
    return !this.closing && this.readyThreads.size >= this.workers;
  }

  stats(): PoolStats {
    return {
      workers: this.workers,
      readyWorkers: this.readyThreads.size,
      busy: this.busy,
      queued: this.waiting.length,
      maxQueue: this.maxQueue,
      ...this.counters,
    };
  }

  /** How long a client turned away now should wait: the time for the present backlog to drain, at least 1 s. */
  retryAfterSeconds(): number {
    if (this.avgRunMs === 0) return DEFAULT_RETRY_AFTER_S;
    const backlog = this.waiting.length + this.busy;
    const seconds = Math.ceil((backlog * this.avgRunMs) / this.workers / 1000);
    return Math.min(MAX_RETRY_AFTER_S, Math.max(DEFAULT_RETRY_AFTER_S, seconds));
  }

  /** True when a task submitted now would be refused: every worker busy and the queue full. */
  get saturated(): boolean {
    return this.busy + this.waiting.length >= this.workers + this.maxQueue;
  }

  /**
   * Refuses (throws NotReadyError, or BusyError with Retry-After) when a task submitted now would be: the HTTP layer
   * asks before reading an upload, so that a full pool costs a refused client nothing. Holds no place: a request
   * takes one only in `run`, once its body is complete (uploads are bounded by plugins/upload-budget.ts instead).
   */
  admit(): void {
    if (!this.accepting) throw new NotReadyError();
    if (this.saturated) throw this.busyError();
  }

  private busyError(): Error {
    this.counters.rejectedBusy++;
    const retryAfter = this.retryAfterSeconds();
    return Object.assign(new BusyError(retryAfter), { retryAfter });
  }

  /**
   * The options of a request with the pool's defaults filled in (the default style, the format's default quality),
   * so the HTTP API and the CLI answer the same request alike. Throws UnknownStyleError for a style not served here.
   */
  withDefaults(asked: AskedOptions): CartoonizeOptions {
    return withDefaults(this, asked);
  }

  hasStyle(id: string): boolean {
    return this.styles.some((s) => s.id === id);
  }

  /**
   * Cartoonizes one encoded image. Takes ownership of `input`: its memory is moved to the worker (the caller's view
   * is detached) or, where it cannot be moved, copied and then zero-filled. Throws the coded errors of errors.ts.
   */
  run(input: Uint8Array, options: CartoonizeOptions, control: RunControl = {}): Promise<RunResult> {
    if (!this.accepting) {
      input.fill(0);
      return Promise.reject(new NotReadyError());
    }
    if (!this.hasStyle(options.style)) {
      input.fill(0);
      return Promise.reject(new UnknownStyleError(options.style));
    }
    if (this.saturated) {
      input.fill(0);
      return Promise.reject(this.busyError());
    }
    if (control.signal?.aborted) {
      input.fill(0);
      return Promise.reject(new AbortedError());
    }
    const guard = new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT); // flags, native calls entered
    const task: CartoonizeTask = { ...options, input: ownedArrayBuffer(input), guard };
    return new Promise<RunResult>((resolve, reject) => {
      const entry: Waiting = {
        task,
        resolve,
        reject,
        enqueuedAt: performance.now(),
        control,
        killer: new AbortController(),
        guard: new Int32Array(guard),
        stopped: false,
        detachClient: () => {},
        clearDeadline: () => {},
        settled: false,
      };
      this.armControls(entry);
      this.waiting.push(entry);
      this.pump();
    });
  }

  /**
   * Wires the client signal and the deadline to one entry. The client's signal is dropped once the entry settles;
   * the deadline stays armed until the worker is done with the task, so that a client who hangs up on a stuck run
   * cannot take the bound on that worker away with it.
   */
  private armControls(entry: Waiting): void {
    const { signal, deadlineMs } = entry.control;
    const leaveQueue = (): boolean => {
      const index = this.waiting.indexOf(entry);
      if (index === -1) return false;
      this.waiting.splice(index, 1);
      wipeAndFree(entry.task.input); // wipe the bytes it would have carried
      entry.clearDeadline();
      return true;
    };
    const onClientAbort = () => {
      // Waiting: dropped. Running: nobody will read the result, but the worker is left to finish (see file comment).
      if (leaveQueue()) this.counters.abortedQueued++;
      this.settle(entry, new AbortedError());
    };
    const timer =
      deadlineMs !== undefined && deadlineMs > 0
        ? setTimeout(() => {
            // Running: stop it, even if its client has already gone; the caller is answered now either way.
            if (!leaveQueue()) this.stopRunning(entry);
            this.settle(entry, new DeadlineError(deadlineMs));
          }, deadlineMs)
        : undefined;
    signal?.addEventListener('abort', onClientAbort, { once: true });
    entry.detachClient = () => signal?.removeEventListener('abort', onClientAbort);
    entry.clearDeadline = () => {
      if (timer !== undefined) clearTimeout(timer);
    };
  }

  /**
   * The deadline's half of the guard protocol (the worker's half is native-guard.ts): the task is cancelled at once
   * and stops at its next native call. One that is still running a while later, and is then in JavaScript (a hang, a
   * bug), has its thread terminated, which is safe there; in native code it is looked at again later.
   */
  private stopRunning(entry: Waiting): void {
    entry.stopped = true;
    this.counters.deadlineOverruns++;
    Atomics.or(entry.guard, 0, GUARD.CANCELLED);
    // Stuck in JavaScript means: found in JavaScript at two checks in a row, with no native call entered between them
    // (the worker counts its entries). A task merely passing through JavaScript between two native calls is not.
    let lastEntries = -1;
    const watchdog = setInterval(() => {
      const entries = Atomics.load(entry.guard, 1);
      const stuck = entries === lastEntries;
      lastEntries = inJavaScript(entry.guard) ? entries : -1;
      if (!stuck || !killable(entry.guard)) return;
      clearInterval(watchdog);
      this.counters.deadlineKills++;
      entry.killer.abort();
    }, KILL_CHECK_MS);
    const clearDeadline = entry.clearDeadline;
    entry.clearDeadline = () => {
      clearDeadline();
      clearInterval(watchdog);
    };
  }

  private settle(entry: Waiting, outcome: Error | RunResult): void {
    if (entry.settled) return;
    entry.settled = true;
    entry.detachClient();
    if (outcome instanceof Error) entry.reject(outcome);
    else entry.resolve(outcome);
  }

  /** Hands waiting tasks to free workers, oldest first. */
  private pump(): void {
    while (this.busy < this.workers && this.waiting.length > 0) {
      const entry = this.waiting.shift()!;
      this.busy++;
      this.running.add(entry);
      void this.dispatch(entry).finally(() => {
        this.running.delete(entry);
        entry.clearDeadline();
        this.busy--;
        this.pump();
        if (this.busy === 0 && this.waiting.length === 0) this.emit('idle');
      });
    }
  }

  private async dispatch(entry: Waiting): Promise<void> {
    const started = performance.now();
    const queueMs = started - entry.enqueuedAt;
    const { killer } = entry;
    let reply: CartoonizeReply;
    try {
      reply = await this.piscina.run(entry.task, { transferList: [entry.task.input], signal: killer.signal });
    } catch (err) {
      if (entry.stopped) return; // the deadline already answered: the worker is being replaced, or the task cancelled
      this.counters.failed++;
      const crashed = /worker exited|terminat/i.test((err as Error).message);
      if (crashed) this.counters.workerCrashes++;
      this.emit('task-failed', { crashed, error: err });
      this.settle(entry, new WorkerFailedError());
      return;
    }
    const runMs = performance.now() - started;
    // Exponential moving average of run time: the basis of Retry-After.
    this.avgRunMs = this.avgRunMs === 0 ? runMs : this.avgRunMs * 0.8 + runMs * 0.2;
    if (!reply.ok) {
      this.counters.failed++;
      this.settle(entry, inputError(reply.code, reply.message));
      return;
    }
    this.counters.completed++;
    if (entry.settled) {
      // The client went away while it ran: drop the result's bytes too.
      wipeAndFree(reply.output);
      return;
    }
    this.settle(entry, { ...reply, queueMs });
  }

  /**
   * Stops taking tasks, fails those still waiting, lets running ones finish, waits for a replacement worker still
   * loading (see `destroy`), then ends the workers.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.failWaiting();
    if (this.busy > 0) await new Promise((resolve) => this.once('idle', resolve));
    while (this.loading()) await new Promise((resolve) => setTimeout(resolve, NATIVE_POLL_MS));
    await this.piscina.close();
  }

  /**
   * Ends the workers now, failing whatever runs: the shutdown timeout, tests. A thread is never terminated inside
   * native code, which aborts the whole process: every running task is cancelled through its guard first (from then
   * on its worker enters no native call), and the workers are ended once none is still inside one. A native call under
   * way is waited for; the pixel limits bound it, and the service manager's stop timeout bounds the rest. So is a
   * worker still starting (a replacement for one that died): loading native modules and opening sessions is native
   * code too, and terminating it there aborts the process the same way (test/faults/destroy.test.ts); a start takes
   * what loading the models takes (a fraction of a second to seconds).
   */
  async destroy(): Promise<void> {
    this.closing = true;
    this.failWaiting();
    for (const entry of this.running) Atomics.or(entry.guard, 0, GUARD.CANCELLED);
    while ([...this.running].some((entry) => inNative(entry.guard)) || this.loading()) await new Promise((resolve) => setTimeout(resolve, NATIVE_POLL_MS));
    await this.piscina.destroy();
  }

  /** A live worker thread has not finished starting: it is loading modules or opening its sessions. */
  private loading(): boolean {
    // A thread that exited on its own reads -1 (see workerDestroy above) and is not loading anything.
    return this.piscina.threads.some((thread) => thread.threadId !== -1 && !this.startedThreads.has(thread.threadId));
  }

  /** Fails every task still waiting (shutdown), wiping the bytes each carried. */
  private failWaiting(): void {
    for (const entry of this.waiting.splice(0)) {
      wipeAndFree(entry.task.input);
      entry.clearDeadline();
      this.settle(entry, new NotReadyError());
    }
  }
}

/** A worker's start-up failure as the pool reports it: a bad model's own ManifestError, rebuilt from its fields. */
function initError(notice: Extract<WorkerNotice, { type: 'init-failed' }>): Error {
  const m = notice.manifest;
  return m === undefined ? new Error(notice.message) : new ManifestError(m.file, m.field, m.problem);
}

/** The task's worker is inside a native call now (and, once CANCELLED, enters none after it). */
function inNative(guard: Int32Array): boolean {
  return (Atomics.load(guard, 0) & GUARD.NATIVE) !== 0;
}

function inJavaScript(guard: Int32Array): boolean {
  const flags = Atomics.load(guard, 0);
  return (flags & GUARD.STARTED) !== 0 && (flags & (GUARD.NATIVE | GUARD.DONE | GUARD.KILLED)) === 0;
}

/**
 * Claims the right to terminate a task's thread: only a started task that is neither in native code nor done. The
 * compare-and-swap races the worker's own (NATIVE), so at most one of the two wins.
 */
function killable(guard: Int32Array): boolean {
  for (;;) {
    const flags = Atomics.load(guard, 0);
    if ((flags & GUARD.STARTED) === 0 || (flags & (GUARD.NATIVE | GUARD.DONE | GUARD.KILLED)) !== 0) return false;
    if (Atomics.compareExchange(guard, 0, flags, flags | GUARD.KILLED) === flags) return true;
  }
}

/**
 * Returns an ArrayBuffer that holds exactly these bytes and that nothing else uses, so it can be transferred.
 * A Node Buffer is often a slice of a shared 8 KiB pool (moving it would detach other Buffers' memory) or of a
 * larger allocation, and a Buffer that native code made over memory of its own (sharp's output on Node 24) cannot
 * be transferred at all: those are copied once, and the original bytes are zero-filled. A whole buffer of its own is
 * taken over (the caller's view is detached), after checking here that it can move, so that no task fails with
 * DataCloneError at the hand-off.
 */
export function ownedArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const backing = bytes.buffer;
  if (backing instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === backing.byteLength && !isPoolBacked(bytes)) {
    try {
      const moved = structuredClone(backing, { transfer: [backing] }); // moves the memory: no copy
      // Node 20 copies a buffer it cannot move instead of refusing it: the original then still holds the upload.
      if (backing.byteLength !== 0) bytes.fill(0);
      return moved;
    } catch {
      // Not transferable: copied below.
    }
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  bytes.fill(0);
  return copy.buffer;
}

