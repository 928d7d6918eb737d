/**
 * Out-of-band notices a worker posts on its parent port (Piscina re-emits them as the pool's 'message' event).
 * Piscina marks its first workers ready before their init has run, so the pool learns readiness from these.
 */
export type WorkerNotice =
  | { privatoon: true; type: 'ready'; threadId: number }
  | { privatoon: true; type: 'init-failed'; threadId: number; message: string };

export function isWorkerNotice(value: unknown): value is WorkerNotice {
  return typeof value === 'object' && value !== null && (value as { privatoon?: unknown }).privatoon === true;
}
