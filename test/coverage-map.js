// tap's coverage map (package.json "coverage-map"): which test files run without coverage. null = none for that file.
//
// Coverage counts every block V8 runs, in the worker threads too, which slows the JavaScript around inference.
// These tests time a deadline against that JavaScript (a deadline meant to fall inside session.run falls before it
// when packing a tensor is slower), so they run as they would in production; what they reach is covered elsewhere
// (test/workers/pool.test.ts, test/http/backpressure.test.ts).
const UNCOVERED = new Set(['test/faults/deadline.test.ts']);

export default function coverageMap(testFile) {
  return UNCOVERED.has(testFile) ? null : [];
}
