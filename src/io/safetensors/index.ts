/** The safetensors format's public API: one import for readers and writers of the format. */
export type { StDType } from './common.js';
export { readSafetensorsHeader, type StHeader, type StTensorInfo } from './header.js';
export { readTensorF32 } from './read.js';
export { writeSafetensors, type StWriteTensor } from './write.js';
export { writeShardedSafetensors } from './shards.js';
export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from './dtype.js';
