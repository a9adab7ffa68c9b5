/**
 * Jest configuration. Tests are TypeScript compiled by ts-jest in transpile-only mode
 * (tsconfig.test.json sets isolatedModules): each file is transpiled on its own, without a type check,
 * which keeps a cold run fast. Type-check the tests with `npx tsc -p tsconfig.test.json --noEmit`.
 */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.test.json' }],
  },
  moduleFileExtensions: ['ts', 'js', 'json', 'node'],
  // The V = 152k parity cases and the N·V > 2^31 native run take seconds, not milliseconds.
  testTimeout: 120000,
};
