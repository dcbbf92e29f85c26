/**
 * Loading a model for a command: hub download progress, a notice while another process holds a
 * blob's download lock, and progress over the tensors while weights are read.
 */
import { LoadedModel, type LoadOptions } from '../backend/model.js';
import { createProgress, downloadProgress } from './progress.js';
import { warn } from './args.js';

export async function loadModel(id: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const download = downloadProgress(`downloading ${id}`);
  const tensors = createProgress(`loading ${id}`, { unit: 'tensors', everyMs: 10_000, delayMs: 3000 });
  try {
    return await LoadedModel.load(id, {
      onProgress: download,
      onLockWait: (file, lock) => warn([`waiting for another process downloading ${file} (lock ${lock})`]),
      onLoad: (done, total) => tensors.update(done, total),
      ...opts,
    });
  } finally {
    download.stop();
    tensors.stop();
  }
}
