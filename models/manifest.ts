/**
 * Model manifests: the JSON file beside each ONNX file that says how to feed it and how to read its output.
 * Everything a pipeline needs to know about a model lives here, so that an operator can drop in a DCT-Net or an
 * AnimeGAN export without touching code. Validation is strict and every error names the file and the field.
 *
 * Pure module (no I/O): models/registry.ts reads the files, the worker only receives validated manifests.
 */

export type Layout = 'NCHW' | 'NHWC';
export type ChannelOrder = 'RGB' | 'BGR';
/** The value range one 8-bit pixel level is mapped to: 0 -> low, 255 -> high. */
export type ValueRange = '0..1' | '-1..1' | '0..255';
export type ModelRole = 'whole' | 'head' | 'detector';
/** Padding fill: a grey level 0..255 (DCT-Net pads with 255, white), or the border pixels repeated. */
export type PadMode = number | 'edge';

export interface TensorSpec {
  name: string;
  layout: Layout;
  channels: ChannelOrder;
  range: ValueRange;
}

export interface SizeRules {
  /** Shrink (never enlarge) so that the short side is at most this; DCT-Net uses 720. */
  maxShortSide?: number | undefined;
  /** Shrink (never enlarge) so that the long side is at most this. */
  maxLongSide?: number | undefined;
  /** Pad right and bottom to a multiple of this (1: no padding). */
  multiple: number;
  pad: PadMode;
  /** Resize the result back to the (oriented) input size after inference. */
  resizeBack: boolean;
}

export interface ModelManifest {
  id: string;
  title: string;
  /** The model's licence and provenance, in a line: shown wherever the style is offered. */
  licence?: string | undefined;
  /** Absolute path once loaded by the registry; relative to the manifest in the JSON file. */
  file: string;
  role: ModelRole;
  input: TensorSpec;
  output: TensorSpec;
  size: SizeRules;
  /** Optional pin of the ONNX file's sha256 (hex): a changed file is a start-up error, not a silent swap. */
  sha256?: string | undefined;
  /** Head models only: the side of the square aligned face crop (DCT-Net: 288). */
  crop?: number | undefined;
  /** Head models only: a grey image (DCT-Net's alpha.jpg), resized to the crop, blended as the head's mask; absolute once loaded. */
  mask?: string | undefined;
  /** Detectors only: how to decode the outputs. */
  family?: string | undefined;
  /** Whole-image styles only: ids of the head model and the face detector for the face-aware path. */
  head?: string | undefined;
  detector?: string | undefined;
  /** Set by `privatoon quantize`: the style this int8 model was made from, and that model file's sha256. */
  quantizedFrom?: { id: string; sha256: string } | undefined;
  /** The JSON file this came from, for error messages. */
  source: string;
}

export class ManifestError extends Error {
  readonly code = 'PTOON_BAD_MANIFEST';
  constructor(
    readonly file: string,
    readonly field: string,
    /** What is wrong with the field; with file and field, all a worker sends for the main thread to rebuild this. */
    readonly problem: string,
  ) {
    super(`${file}: field "${field}" ${problem}`);
    this.name = 'ManifestError';
  }
}

const LAYOUTS: readonly Layout[] = ['NCHW', 'NHWC'];
const ORDERS: readonly ChannelOrder[] = ['RGB', 'BGR'];
const RANGES: readonly ValueRange[] = ['0..1', '-1..1', '0..255'];
const ROLES: readonly ModelRole[] = ['whole', 'head', 'detector'];
const ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
/** Sides above this are almost certainly a typo and would make a single tensor allocation of gigabytes. */
const MAX_SIDE_RULE = 8192;

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses and validates one manifest. `file` is the JSON path, used in every error message. */
export function parseManifest(file: string, text: string): ModelManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ManifestError(file, '(file)', `is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new ManifestError(file, '(file)', 'must be a JSON object');
  const v = new FieldReader(file, raw);

  const id = v.string('id');
  if (!ID_PATTERN.test(id)) v.fail('id', 'must be lower-case letters, digits, "-" or "_" (at most 64)');
  const role = v.oneOf('role', ROLES, 'whole');
  const input = readTensor(v, 'input');
  const outputRaw = raw['output'];
  // The output usually follows the input's conventions; only what differs needs saying.
  if (outputRaw !== undefined && !isObject(outputRaw)) v.fail('output', 'must be an object');
  const output = readTensor(new FieldReader(file, { output: { ...(raw['input'] as Json), ...(outputRaw ?? {}) } }), 'output');

  const size = v.object('size');
  const sv = new FieldReader(file, size, 'size.');
  const rules: SizeRules = {
    maxShortSide: sv.optionalInt('maxShortSide', 16, MAX_SIDE_RULE),
    maxLongSide: sv.optionalInt('maxLongSide', 16, MAX_SIDE_RULE),
    multiple: sv.optionalInt('multiple', 1, 256) ?? 1,
    pad: readPad(sv),
    resizeBack: sv.optionalBool('resizeBack') ?? true,
  };

  const manifest: ModelManifest = {
    id,
    title: v.optionalString('title') ?? id,
    licence: v.optionalString('licence'),
    file: v.string('file'),
    role,
    input,
    output,
    size: rules,
    sha256: v.optionalString('sha256'),
    crop: v.optionalInt('crop', 32, 2048),
    mask: v.optionalString('mask'),
    family: v.optionalString('family'),
    head: v.optionalString('head'),
    detector: v.optionalString('detector'),
    quantizedFrom: readQuantizedFrom(v),
    source: file,
  };
  if (manifest.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(manifest.sha256)) {
    v.fail('sha256', 'must be 64 lower-case hex digits');
  }
  if (role === 'head' && manifest.crop === undefined) v.fail('crop', 'is required for a head model (DCT-Net: 288)');
  if (manifest.mask !== undefined && role !== 'head') v.fail('mask', 'applies to head models only (the blend mask of the aligned crop)');
  if (role === 'detector' && manifest.family === undefined) v.fail('family', 'is required for a detector (e.g. "yunet")');
  // The detector runs on a copy at most this long; its strides go down to 32 pixels.
  if (role === 'detector' && rules.maxLongSide !== undefined && rules.maxLongSide < 32) {
    new FieldReader(file, size, 'size.').fail('maxLongSide', 'must be at least 32 for a detector');
  }
  if ((manifest.head === undefined) !== (manifest.detector === undefined)) {
    v.fail(manifest.head === undefined ? 'head' : 'detector', 'must be given together with the other: the face path needs both a head model and a detector');
  }
  if (manifest.file.includes('\0')) v.fail('file', 'must be a plain path');
  return manifest;
}

function readTensor(v: FieldReader, key: string): TensorSpec {
  const t = new FieldReader(v.file, v.object(key), `${key}.`);
  return {
    name: t.string('name'),
    layout: t.oneOf('layout', LAYOUTS),
    channels: t.oneOf('channels', ORDERS),
    range: t.oneOf('range', RANGES),
  };
}

function readQuantizedFrom(v: FieldReader): ModelManifest['quantizedFrom'] {
  if (v.raw['quantizedFrom'] === undefined) return undefined;
  const q = new FieldReader(v.file, v.object('quantizedFrom'), 'quantizedFrom.');
  const from = { id: q.string('id'), sha256: q.string('sha256') };
  if (!/^[0-9a-f]{64}$/.test(from.sha256)) q.fail('sha256', 'must be 64 lower-case hex digits');
  return from;
}

function readPad(sv: FieldReader): PadMode {
  const pad = sv.raw['pad'];
  if (pad === undefined) return 'edge';
  if (pad === 'edge') return pad;
  if (typeof pad === 'number' && Number.isInteger(pad) && pad >= 0 && pad <= 255) return pad;
  return sv.fail('pad', 'must be "edge" or a grey level 0..255 (255 is white, as DCT-Net pads)');
}

/** Reads typed fields from one JSON object, failing with the file and the dotted field name. */
class FieldReader {
  constructor(
    readonly file: string,
    readonly raw: Json,
    private readonly prefix = '',
  ) {}

  fail(key: string, problem: string): never {
    throw new ManifestError(this.file, this.prefix + key, problem);
  }

  string(key: string): string {
    const value = this.raw[key];
    if (typeof value !== 'string' || value.length === 0) this.fail(key, 'is required and must be a non-empty string');
    return value;
  }

  optionalString(key: string): string | undefined {
    return this.raw[key] === undefined ? undefined : this.string(key);
  }

  object(key: string): Json {
    const value = this.raw[key];
    if (!isObject(value)) this.fail(key, 'is required and must be an object');
    return value;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
    const value = this.raw[key] ?? fallback;
    if (typeof value !== 'string' || !allowed.includes(value as T)) {
      this.fail(key, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
    }
    return value as T;
  }

  optionalInt(key: string, min: number, max: number): number | undefined {
    const value = this.raw[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(key, `must be an integer from ${min} to ${max}`);
    }
    return value;
  }

  optionalBool(key: string): boolean | undefined {
    const value = this.raw[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'boolean') this.fail(key, 'must be true or false');
    return value;
  }
}
