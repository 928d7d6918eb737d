/**
 * The one way this project loads onnxruntime: in worker threads, and in the model tools. Telemetry off first
 * (contract.ts says why): effective where this runs in the main thread (the tools); for the workers, the pool has
 * already set it in the process's environment before starting them.
 */
import { disableOrtTelemetry } from '../contract.js';

disableOrtTelemetry();

export * from 'onnxruntime-node';
