/**
 * One fuzz case from (run seed, case index): a seed image, a stack of 1 to 8 mutations (structure-aware for the
 * bytes' format about half the time), and the request options the worker would get with it. Nothing else feeds
 * into it, so a case reported by index can be rebuilt exactly.
 */
import type { OutputFormat } from '../../contract.js';
import { BYTE_MUTATORS, FORMAT_MUTATORS, formatOf } from './mutators.js';
import { caseSeed, Random } from './random.js';
import type { Seed } from './seeds.js';

/** The size rules of the two kinds of model the service runs: the built-in toon and the DCT-Net class. */
export const MODEL_SHAPES = {
  toon: { size: { maxLongSide: 1024, multiple: 1, pad: 'edge' as const }, tensor: { layout: 'NCHW' as const, channels: 'RGB' as const, range: '0..1' as const } },
  dctnet: { size: { maxShortSide: 720, multiple: 16, pad: 255 }, tensor: { layout: 'NHWC' as const, channels: 'BGR' as const, range: '0..255' as const } },
};

export interface CaseRequest {
  model: keyof typeof MODEL_SHAPES;
  format: OutputFormat;
  quality: number;
  /** The request's max_size, when it sets one. */
  maxSize: number | undefined;
}

export interface FuzzCase {
  index: number;
  seed: string;
  /** Mutator names in the order applied; empty for an unmutated seed (1 case in 100: the good path stays covered). */
  mutations: string[];
  bytes: Uint8Array;
  request: CaseRequest;
}

export function makeCase(corpus: readonly Seed[], runSeed: number, index: number): FuzzCase {
  const rng = new Random(caseSeed(runSeed, index));
  const seed = rng.pick(corpus);
  const request: CaseRequest = {
    model: rng.chance(0.5) ? 'toon' : 'dctnet',
    format: rng.pick(['jpeg', 'png', 'webp'] as const),
    quality: rng.between(1, 100),
    maxSize: rng.chance(0.7) ? undefined : rng.pick([1, 16, 64, 500, 4096]),
  };
  const mutations: string[] = [];
  let bytes = seed.bytes;
  if (rng.chance(0.01)) return { index, seed: seed.name, mutations, bytes: bytes.slice(), request };
  const donors = corpus.map((s) => s.bytes);
  const count = rng.weighted([[1, 50], [2, 25], [3, 15], [rng.between(4, 8), 10]] as const);
  for (let i = 0; i < count; i++) {
    const format = formatOf(bytes);
    const structured = format !== undefined && rng.chance(0.55) ? rng.pick(FORMAT_MUTATORS[format]) : undefined;
    let out = structured?.apply(bytes, rng, donors);
    let name = structured?.name;
    if (out === undefined) {
      const generic = rng.pick(BYTE_MUTATORS);
      out = generic.apply(bytes, rng, donors);
      name = generic.name;
    }
    if (out === undefined || name === undefined) continue;
    bytes = out;
    mutations.push(name);
  }
  // Mutators may return views of the seed: the case gets bytes of its own (the pipeline wipes its input).
  return { index, seed: seed.name, mutations, bytes: bytes === seed.bytes || bytes.buffer === seed.bytes.buffer ? bytes.slice() : bytes, request };
}
