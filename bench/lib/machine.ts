/** One line naming the machine a table came from: CPU model (lscpu), cores, memory, Node. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';

export function machineLine(): string {
  let model = cpus()[0]?.model ?? 'unknown CPU';
  try {
    const lscpu = execFileSync('lscpu', { encoding: 'utf8', timeout: 5000 });
    model = /^Model name:\s*(.+)$/m.exec(lscpu)?.[1]?.trim() ?? model;
  } catch {
    // no lscpu: os.cpus() names the model
  }
  return `${model}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${process.platform}`;
}

/** The CPU's int8 dot-product extensions (/proc/cpuinfo), which decide how much int8 gains over fp32. */
export function int8Flags(): string {
  let flags: Set<string>;
  try {
    flags = new Set((/^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').split(' '));
  } catch {
    return 'CPU flags unknown';
  }
  const have = [['avx512_vnni', 'AVX-512 VNNI'], ['avx_vnni', 'AVX-VNNI'], ['amx_int8', 'AMX-INT8'], ['avx512f', 'AVX-512F'], ['avx2', 'AVX2']]
    .filter(([flag]) => flags.has(flag!))
    .map(([, name]) => name!);
  const vnni = flags.has('avx512_vnni') || flags.has('avx_vnni');
  return `${have.join(', ') || 'no AVX2'}${vnni ? '' : '; no VNNI'}`;
}
