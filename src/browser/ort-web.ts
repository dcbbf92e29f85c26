/** onnxruntime-web under the default-import shape runtime/ort.ts uses (the browser bundle maps onnxruntime-node here). */
import * as ort from 'onnxruntime-web';

export default ort;
