// Node module hooks (registered by ./register.js): `jobhost:plugin/context@0.1.0`,
// which exists only inside a component, resolves to ./mock-context.js.
const MOCK = new URL('./mock-context.js', import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  if (specifier.startsWith('jobhost:plugin/context')) {
    if (specifier !== 'jobhost:plugin/context@0.1.0') {
      throw new Error(`the jobhost mock implements jobhost:plugin/context@0.1.0, not ${specifier}`);
    }
    return { url: MOCK, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
