/**
 * The memory budget a run's peak RSS is held to:
 *
 *   budget = base + workers x (model + image working set) + queued uploads
 *
 *  - model: RSS one session of the style adds when created and warmed (measured by the plain loop, in this process);
 *  - image working set: the RSS a session adds on top while it runs on the run's images, the largest of them
 *    included (decoded pixels, input and output tensors, onnxruntime's arena, codec buffers; plain loop again);
 *  - base: the service's RSS right after start-up less its workers' models: Node, Fastify, the libraries, the
 *    worker threads' isolates;
 *  - HTTP allowance: what the main thread adds under load, for request and answer buffers of the connections and
 *    its V8 heap grown to match (its young generation alone may take 3 x 16 MiB semi-spaces): 64 MiB;
 *  - queued uploads: the bodies of the requests the service may hold at once (workers running + MAX_QUEUE waiting).
 *
 * base + HTTP allowance is what the service needs with no model; the rest grows with the workers and the images.
 */

/** The main thread's growth under load (see above); the overload run reports the measured heap growth beside it. */
export const HTTP_ALLOWANCE_BYTES = 64 * 2 ** 20;
import { mib } from './stats.js';

export interface BudgetInputs {
  /** RSS of the service just after start-up (warm sessions, no request served yet). */
  coldRss: number;
  workers: number;
  modelBytes: number;
  workingSetBytes: number;
  maxQueue: number;
  largestUploadBytes: number;
}

export interface Budget extends BudgetInputs {
  base: number;
  httpAllowance: number;
  queuedUploads: number;
  bytes: number;
  /** The formula with its numbers, in MiB. */
  formula: string;
}

export function memoryBudget(inputs: BudgetInputs): Budget {
  const base = Math.max(0, inputs.coldRss - inputs.workers * inputs.modelBytes);
  const queuedUploads = (inputs.workers + inputs.maxQueue) * inputs.largestUploadBytes;
  const httpAllowance = HTTP_ALLOWANCE_BYTES;
  const bytes = base + httpAllowance + inputs.workers * (inputs.modelBytes + inputs.workingSetBytes) + queuedUploads;
  const formula =
    `base ${mib(base)} + HTTP allowance ${mib(httpAllowance)} + ${inputs.workers} workers x (model ${mib(inputs.modelBytes)} + image working set ${mib(inputs.workingSetBytes)})` +
    ` + queued uploads ${(queuedUploads / 2 ** 20).toFixed(1)} = ${mib(bytes)} MiB`;
  return { ...inputs, base, httpAllowance, queuedUploads, bytes, formula };
}
