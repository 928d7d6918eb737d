/**
 * `privatoon quantize`'s usage line, apart from the command: the command loads onnxruntime, and the CLI's help (and
 * every other command) must not (cli.ts imports the command only when it runs).
 */
export const QUANTIZE_USAGE =
  '  privatoon quantize <style-id|manifest.json> --calibrate DIR [--check DIR] [--out DIR] [--id ID]\n' +
  '                     [--calibration percentile|minmax] [--reduce-range] [--keep-fp32 NODE,...] [--force]\n' +
  '                     [--threads N] [--timing-runs N]';
