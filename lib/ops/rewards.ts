/**
 * The `rewards` namespace (SPEC §5): every reward function of the engine in one object, gathered from the
 * sub-family files — early exit and rejection (rewards_early_exit.ts, §5.1–5.2), process rewards
 * (rewards_process.ts, §5.3), length shaping (rewards_length.ts, §5.4), phase entropy (phase_entropy.ts, §5.5),
 * composition and group filters (rewards_compose.ts, §5.6–5.7).
 *
 * Functions with per-token native kernels (phaseEntropy, scatterSteps, implicitProcessReward) come as an async
 * op and a `…Sync` twin like tokenStats; the others are O(B·S) plain-JS functions and are synchronous, like
 * entropyMask (a Promise around microseconds of work would only add a tick).
 */
import { budgetRewards, firstCorrectIndex, overthinkPenalty, rejectByPartialReward, serialGroupRewards } from './rewards_early_exit';
import {
  aggregateSteps, implicitProcessReward, implicitProcessRewardSync, scatterSteps, scatterStepsSync, thoughtUnits, transformSteps,
} from './rewards_process';
import {
  conciseWhenCorrect, groupGatedLength, kimiLength, lengthByDifficulty, lengthStep, overlongPenalty, truncationPenalty,
} from './rewards_length';
import { phaseEntropy, phaseEntropySync } from './phase_entropy';
import {
  combine, correctNoisyVerifier, groupFilter, logSigmoidCentered, potentialShaping, sigmoidCentered, trustWeighted,
} from './rewards_compose';

export const rewards = Object.freeze({
  // §5.1 early exit, §5.2 early rejection
  serialGroupRewards,
  budgetRewards,
  firstCorrectIndex,
  overthinkPenalty,
  rejectByPartialReward,
  // §5.3 process rewards
  aggregateSteps,
  transformSteps,
  thoughtUnits,
  scatterSteps,
  scatterStepsSync,
  implicitProcessReward,
  implicitProcessRewardSync,
  // §5.4 length and efficiency shaping
  lengthStep,
  lengthByDifficulty,
  kimiLength,
  overlongPenalty,
  truncationPenalty,
  groupGatedLength,
  conciseWhenCorrect,
  // §5.5 phase entropy
  phaseEntropy,
  phaseEntropySync,
  // §5.6 composition, §5.7 group filters
  combine,
  trustWeighted,
  logSigmoidCentered,
  sigmoidCentered,
  correctNoisyVerifier,
  potentialShaping,
  groupFilter,
});

export type { Numbers, Binary, Integers } from './rewards_inputs';
export type {
  SerialGroupInputs, SerialGroupResult, BudgetInputs, BudgetOptions, BudgetPrior, BudgetResult, StepOutcomeInputs,
  FirstCorrectResult, OverthinkInputs, OverthinkResult, RejectReason, RejectResult,
} from './rewards_early_exit';
export type {
  AggregateMode, TransformOptions, ThoughtUnitsResult, ScatterStepsOptions, ImplicitProcessRewardOptions,
  ImplicitProcessRewardResult,
} from './rewards_process';
export type { LengthInputs, LengthStepOptions, LengthByDifficultyOptions } from './rewards_length';
export type { PhaseEntropyInputs, PhaseEntropyOptions, PhaseEntropyResult } from './phase_entropy';
export type { Gate, GateOp, CombineResult, TrustWeightedInputs, GroupDropReason, GroupFilterResult } from './rewards_compose';
