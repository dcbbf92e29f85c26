import type { Command } from 'commander';
import { choice, warn } from './args.js';
import type { DirectionMethod } from '../directions/common.js';
import { DIRECTION_FORMATS, DIRECTION_METHODS, runDirections, WEIGHT_MODES, type DirectionFormat, type WeightMode } from '../experiments/directions.js';


const fmt = (x: number) => (Number.isFinite(x) ? Number(x.toPrecision(4)).toString() : String(x));

interface Opts {
  pos: string;
  neg: string;
  out: string;
  weight: WeightMode;
  method: DirectionMethod;
  format?: DirectionFormat;
}

export function register(program: Command): void {
  program
    .command('directions')
    .description('per-layer directions from two extraction folders: mean(pos) - mean(neg), or repeng PCA')
    .requiredOption('--pos <dir>', 'extraction folder of the positive set (emlens extract)')
    .requiredOption('--neg <dir>', 'extraction folder of the negative set (same model, hook and layers)')
    .requiredOption('--out <file>', 'direction file to write')
    .option('--method <m>', 'mean-diff (unnormalised, norms in the metadata) | pca (repeng pca_diff: unit, paired rows)', choice('--method', DIRECTION_METHODS), 'mean-diff')
    .option('--weight <w>', 'mean-diff pooling: rows (every row counts once) | tokens (token-weighted, as the reference code)', choice('--weight', WEIGHT_MODES), 'rows')
    .option(
      '--format <f>',
      'safetensors | gguf (llama.cpp control vector: direction.N = blocks.N.hook_resid_post; layer 0 is dropped with a warning, llama.cpp cannot steer block 0) | npy (FILE + FILE.layers.json); must agree with the --out extension (.safetensors, .gguf or .npy), which alone decides by default',
      choice('--format', DIRECTION_FORMATS),
    )
    .action((o: Opts) => {
      const r = runDirections({ pos: o.pos, neg: o.neg, method: o.method, weight: o.weight, out: o.out, format: o.format });
      warn(r.warnings);
      const p = r.pair;
      console.log(
        `${r.method}${r.method === 'mean-diff' ? ` (${r.weight}-weighted)` : ''} at ${r.hook}: pos ${p.pos.meta.rows} rows, neg ${p.neg.meta.rows} rows, ${r.layers.size} layers`,
      );
      if (r.method === 'mean-diff') {
        const best = r.perLayer.reduce((a, b) => (b.norm > a.norm ? b : a));
        console.log(`norms: ${r.perLayer.map((x) => `${x.layer}:${fmt(x.norm)}`).join(' ')} (largest at layer ${best.layer})`);
      } else {
        console.log(`explained variance ratio: ${r.perLayer.map((x) => `${x.layer}:${fmt(x.explainedVarianceRatio!)}`).join(' ')}`);
      }
      console.log(`wrote ${r.written.files.join(' + ')} (${r.written.format}, layers ${r.written.layers.join(',')})`);
    });
}
