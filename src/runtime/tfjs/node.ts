// Loading out/tfjs/ from disk in Node: tfjs-core has no file:// loader without tfjs-node,
// so this IOHandler reads model.json and its shards itself.
//   const model = await loadGraphModel(graphModelFromDir('out/tfjs'));
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

export function graphModelFromDir(dir: string): tf.io.IOHandler {
  return {
    load: () => {
      const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as tf.io.ModelJSON;
      return tf.io.getModelArtifactsForJSON(json, async (groups) => {
        const specs = groups.flatMap((g) => g.weights);
        const data = Buffer.concat(groups.flatMap((g) => g.paths.map((p) => readFileSync(join(dir, p)))));
        return [specs, data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)];
      });
    },
  };
}
