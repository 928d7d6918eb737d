/**
 * What one session of a style costs in memory (the model, and the image working set on given images), measured by
 * the plain loop (plain.ts) in a fresh child process. A fresh process matters: in a process that has already freed
 * memory (the bench making its images with sharp, a test's earlier work), the allocator hands that memory to the new
 * session without growing RSS, and the working set read from RSS comes out low and varies from run to run (54 to
 * 107 MiB for the same toon session on the same 320x320 photos); the memory budget (budget.ts) built on it then
 * fails a service that is fine.
 *
 * The child is this file, run by node with tsx's loader and nothing else (no test runner's hooks: `bareNode` in server.ts,
 * which starts the service the same way); it gets the style's folders and the images over IPC and answers with the two
 * figures.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PROJECT_ROOT } from '../../paths.js';
import type { BenchImage } from './images.js';
import { findManifest, plainLoop } from './plain.js';
import { bareNode } from './server.js';

export interface SessionMemory {
  /** RSS growth from creating and warming the session. */
  modelBytes: number;
  /** RSS growth above that while running the worker's pipeline on the images. */
  workingSetBytes: number;
}

interface Request {
  dirs: string[];
  style: string;
  images: { name: string; jpeg: string; width: number; height: number }[];
  seconds: number;
}

export async function sessionMemory(dirs: readonly string[], style: string, images: readonly BenchImage[], seconds: number): Promise<SessionMemory> {
  const child = spawn(...bareNode(['--import', 'tsx', fileURLToPath(import.meta.url)]), {
    cwd: PROJECT_ROOT,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const request: Request = { dirs: [...dirs], style, seconds, images: images.map((i) => ({ ...i, jpeg: i.jpeg.toString('base64') })) };
  return new Promise<SessionMemory>((resolve, reject) => {
    let answer: SessionMemory | undefined;
    child.once('message', (m) => {
      answer = m as SessionMemory;
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (answer !== undefined && code === 0) resolve(answer);
      else reject(new Error(`the session-memory child ended (${signal ?? code}) without an answer`));
    });
    child.send(request);
  });
}

async function measure(request: Request): Promise<SessionMemory> {
  const images = request.images.map((i) => ({ ...i, jpeg: Buffer.from(i.jpeg, 'base64') }));
  const result = await plainLoop(await findManifest(request.dirs, request.style), images, { kind: 'pipeline', threads: 1, seconds: request.seconds });
  return { modelBytes: result.modelBytes, workingSetBytes: result.workingSetBytes };
}

// Run as the child: one request, one answer, then exit.
if (process.send !== undefined && process.argv[1] === fileURLToPath(import.meta.url)) {
  process.once('message', (request: Request) => {
    measure(request).then(
      (memory) => process.send!(memory, () => process.exit(0)),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  });
}
