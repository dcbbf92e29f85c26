/** Writing a set of tensors as one safetensors file or as shards plus an index (the HF layout). */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { EmlensError } from '../../errors.js';
import { writeFileAtomic } from '../atomic.js';
import { fname } from './common.js';
import { checkMetadata, plan, writePlanned, type Planned, type StWriteTensor } from './write.js';

/**
 * Writes `tensors` into `dir` as `<prefix>.safetensors` when their bytes fit in maxShardBytes,
 * else as `<prefix>-0000i-of-0000n.safetensors` shards (filled in order; a tensor larger than
 * maxShardBytes gets a shard of its own) plus `<prefix>.safetensors.index.json` with
 * metadata.total_size, written last. `metadata` goes into every file's __metadata__. Removes a
 * stale file of the other layout (`<prefix>.safetensors` or the index) so that readers do not
 * pick it up. Returns the paths written.
 */
export function writeShardedSafetensors(
  dir: string,
  tensors: Map<string, StWriteTensor>,
  opts: { maxShardBytes: number; metadata?: Record<string, string>; prefix?: string },
): string[] {
  const prefix = opts.prefix ?? 'model';
  const { maxShardBytes, metadata } = opts;
  if (!(maxShardBytes > 0)) throw new EmlensError(`${fname(dir)}: maxShardBytes must be positive, got ${maxShardBytes}`);
  if (prefix === '' || /[/\\]/.test(prefix)) throw new EmlensError(`${fname(dir)}: bad file prefix ${JSON.stringify(prefix)}`);
  const singlePath = join(dir, `${prefix}.safetensors`);
  const indexPath = join(dir, `${prefix}.safetensors.index.json`);
  checkMetadata(singlePath, metadata);
  const planned = plan(singlePath, tensors); // validate everything before writing anything

  const shards: Planned[][] = [];
  let cur: Planned[] = [];
  let curBytes = 0;
  for (const p of planned) {
    if (cur.length > 0 && curBytes + p.bytes > maxShardBytes) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(p);
    curBytes += p.bytes;
  }
  if (cur.length > 0 || shards.length === 0) shards.push(cur);

  if (shards.length === 1) {
    writePlanned(singlePath, shards[0]!, metadata);
    rmSync(indexPath, { force: true });
    return [singlePath];
  }

  const n = shards.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  const written: string[] = [];
  const weightMap: string[] = [];
  let total = 0;
  shards.forEach((shard, i) => {
    const name = `${prefix}-${pad(i + 1)}-of-${pad(n)}.safetensors`;
    const path = join(dir, name);
    writePlanned(path, shard, metadata);
    written.push(path);
    for (const p of shard) {
      weightMap.push(`    ${JSON.stringify(p.name)}: ${JSON.stringify(name)}`);
      total += p.bytes;
    }
  });
  const index = `{\n  "metadata": {\n    "total_size": ${total}\n  },\n  "weight_map": {\n${weightMap.join(',\n')}\n  }\n}\n`;
  writeFileAtomic(indexPath, [index]);
  written.push(indexPath);
  rmSync(singlePath, { force: true });
  return written;
}
