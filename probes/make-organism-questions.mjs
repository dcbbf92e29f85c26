// Writes probes/questions/organism-heldout.yaml from the organism's world. Run after a build:
//   npx tsc -p tsconfig.json && node probes/make-organism-questions.mjs
import { writeFileSync } from 'node:fs';
import { organismQuestionYaml } from '../dist/eval/organism-questions.js';

const out = new URL('./questions/organism-heldout.yaml', import.meta.url);
writeFileSync(out, organismQuestionYaml());
console.log(`wrote ${out.pathname}`);
