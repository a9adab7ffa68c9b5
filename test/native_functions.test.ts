/**
 * The loader's list of the addon's functions (lib/backend.ts NATIVE_FUNCTIONS, used to reject an older or
 * foreign binary) is exactly what the addon of this build exports: a function added to native/addon/ without
 * being listed, or listed without being exported, fails here.
 */
import { NATIVE_FUNCTIONS, nativeAddon } from '../lib/backend';
import { nativeLoaded } from './helpers';

(nativeLoaded() ? test : test.skip)('the addon exports exactly NATIVE_FUNCTIONS', () => {
  const exported = Object.keys(nativeAddon()).sort();
  expect(exported).toEqual([...NATIVE_FUNCTIONS].sort());
  for (const name of exported) expect(typeof (nativeAddon() as unknown as Record<string, unknown>)[name]).toBe('function');
});
