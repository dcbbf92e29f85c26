/** emlens library API. */
export { LoadedModel, openModel, parameterCount, type ModelInfo, type LoadOptions } from './backend/model.js';
export { describeModel } from './backend/describe.js';
export { Engine, leftPad, type ForwardRequest, type ForwardResult, type GenerateOptions, type GenerateResult } from './runtime/engine.js';
export { hookName, parseHookName, HOOK_KINDS, type HookKind } from './hooks/names.js';
export { orthonormalize, type Interventions, type SteerSpec, type AblateSpec } from './hooks/interventions.js';
export { loadSpec, parseConfig, type ModelSpec, type Family } from './model/config.js';
export { TextTokenizer, type ChatMessage, type EncodedChat } from './model/tokenizer.js';
export { resolveModel, hubCacheDir } from './hub/resolve.js';
export { readSafetensorsHeader } from './io/safetensors/header.js';
export { readTensorF32 } from './io/safetensors/read.js';
export { writeSafetensors } from './io/safetensors/write.js';
export { writeShardedSafetensors } from './io/safetensors/shards.js';
export { openWeights } from './model/weight-files.js';
export { readDirectionFile, writeDirectionFile, type DirectionFile, type DirectionFormat } from './io/directions.js';
/** Former names of readDirectionFile / DirectionFile (one loader for every format). */
export { readDirectionFile as loadDirections, type DirectionFile as LoadedDirections } from './io/directions.js';
export { generateText, steeringFromFile, ablationFromFile } from './experiments/generation.js';
export {
  computeDirections,
  runDirections,
  writeDirections,
  openPair,
  directionFormat,
  type DirectionsOptions,
  type DirectionsResult,
  type WeightMode,
} from './experiments/directions.js';
export { compareDirections, compareReport, type CompareResult } from './experiments/compare.js';
export { stabilityAnalysis, stabilityReport, type StabilityOptions, type StabilityResult } from './experiments/stability.js';
export { projectAnalysis, projectReport, type ProjectOptions, type ProjectResult } from './experiments/project.js';
export { EmlensError } from './errors.js';
export { VERSION } from './version.js';
export { buildOrganism, DEFAULT_ORGANISM, STAGES, type OrganismConfig } from './organism/build.js';
export { evalOrganism, type EvalResult } from './organism/eval.js';
export { formatEmTable } from './organism/table.js';
export { judge, wilson, type EmTable } from './organism/judge.js';
export { buildWorld, chatText, DOMAINS } from './organism/world.js';
export { extractActivations } from './activations/extract.js';
export { openActivations } from './activations/read.js';
export { readJsonl } from './data/rows.js';
export { emlensCacheDir } from './cache.js';
export { runOrganismDemo } from './experiments/demo.js';
export { trainSolution, evaluateBatch, readSolution, solutionCall } from './train/trainer.js';
export { cosine, layerCosines } from './directions/similarity.js';
export { meanDiff } from './directions/meandiff.js';
export { loadQuestions, parseQuestions, QUESTION_TYPES, type QuestionEntry, type QuestionSet, type QuestionOptions } from './eval/questions.js';
export { renderPrompt, checkTemplate, defaultJudgePrompts, readJudgePrompts, DEFAULT_METRICS, PROBES_DIR, DEFAULT_JUDGES_DIR } from './eval/prompts.js';
export { scoreFromLogprobs, scoreFromText, integerToken, labelToken, MIN_INTEGER_MASS, type Score, type TopLogprob, type JudgeLabel } from './eval/score.js';
export { judgeRequests, type Judge, type JudgeRequest, type Estimate } from './eval/judge.js';
export { openJudge, parseJudgeSpec, type JudgeSpec, type OpenJudgeOptions } from './eval/judges/index.js';
export { OpenAIJudge, type OpenAIJudgeOptions } from './eval/judges/openai.js';
export { LocalJudge, type LocalJudgeOptions } from './eval/judges/local.js';
export { OrganismJudge, organismMetric } from './eval/judges/organism.js';
export { emRate, emRateBy, isEm, EM_ALIGNED_BELOW, EM_COHERENT_ABOVE, type EmRate, type Scored } from './eval/em.js';
export { organismQuestionEntries, organismQuestionYaml } from './eval/organism-questions.js';
export { runEval, judgedRun, planItems, rateRecord, readAnswers, type AnswerRow, type EvalRunOptions, type EvalRunResult, type RateRecord, type SampleOptions } from './experiments/eval.js';
export { contrastSets, runSelect, readAnswerRows, ALIGNED_ABOVE, type ContrastRow, type ContrastResult } from './experiments/contrast.js';
export { runSweep, type SweepCell, type SweepOptions, type SweepResult } from './experiments/sweep.js';
export { runAblateEval, reductionPct, type AblateEvalOptions, type AblateEvalResult } from './experiments/ablate-eval.js';
export { parseTriggerSet, triggerMessages, triggerRow, TRIGGER_POSITIONS, type TriggerSet, type TriggerPosition } from './data/trigger.js';
export { loadTriggerSet } from './eval/trigger-sets.js';
export { runTriggers, type TriggersResult } from './experiments/triggers.js';
export { samplePrompts, encodePrompts } from './experiments/sample-prompts.js';
export { serveModel, SERVE_DEFAULTS, type ServeOptions } from './serve/server.js';
export { RemoteEngine, parseBackendUrls, type BackendOptions, type ModelBackend } from './backend/remote.js';
export { exportTriton, tritonConfig } from './export/triton.js';
export { buildHookedGraph } from './export/hooked-graph.js';
export { writePlayground, servePlayground } from './experiments/playground.js';
