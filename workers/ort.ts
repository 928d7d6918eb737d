/**
 * The one way this project loads onnxruntime. onnxruntime-node has telemetry of its own on Linux: it keeps a SQLite
 * store under ~/.cache/Microsoft, writes /tmp/mat-debug-<pid>.log and may upload events. A service that writes
 * nothing to disk and calls no one turns it off. The native library reads the variable when it creates its
 * environment, at the first session, so setting it here, in the main thread, covers the worker threads too.
 */
process.env['ORT_DISABLE_TELEMETRY'] ??= '1';

export * from 'onnxruntime-node';
