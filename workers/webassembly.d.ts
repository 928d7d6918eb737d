/**
 * The part of the WebAssembly JavaScript API that workers/simd.ts and workers/scratch.ts use. Node has the whole API;
 * TypeScript declares it only in its DOM and web-worker libraries, which would bring browser globals into a server.
 */
declare namespace WebAssembly {
  class Memory {
    constructor(descriptor: { initial: number; maximum?: number });
    readonly buffer: ArrayBuffer;
  }
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports?: Record<string, Record<string, unknown>>);
    readonly exports: Record<string, unknown>;
  }
  function validate(bytes: Uint8Array): boolean;
}
